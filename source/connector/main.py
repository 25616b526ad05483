"""Entry point (BEMCom convention): settings -> logging -> the service until a signal."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from dotenv import load_dotenv

from connector import service
from connector.ocpp_server import ListenError
from connector.settings import Settings, SettingsError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(debug: bool) -> None:
    logging.basicConfig(format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger().setLevel(logging.DEBUG if debug else logging.INFO)
    # The libraries log every frame or handshake at INFO/DEBUG; at fleet scale that
    # floods N/logs. Our own lines already name each charge point and refusal.
    for noisy in ("ocpp", "websockets"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)


def main() -> int:
    # A .env in the working directory fills in what the environment does not set.
    load_dotenv(Path.cwd() / ".env", override=False)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        print(f"ocpp-connector: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.debug)
    logging.getLogger(__name__).debug("settings: %s", settings)
    try:
        asyncio.run(service.run(settings))
    except ListenError as error:
        print(f"ocpp-connector: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
