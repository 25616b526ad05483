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
from connector.security import SecurityConfigError
from connector.security import load as load_security
from connector.settings import Settings, SettingsError
from connector.transactions import StateDirError, check_state_dir

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(debug: bool) -> None:
    logging.basicConfig(format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger().setLevel(logging.DEBUG if debug else logging.INFO)
    # The libraries log every frame or handshake at INFO/DEBUG; at fleet scale that
    # floods N/logs. Our own lines already name each charge point and refusal.
    logging.getLogger("ocpp").setLevel(logging.DEBUG if debug else logging.WARNING)
    # Never DEBUG for websockets: at that level it logs every request header, credentials
    # (Authorization: Basic ...) included.
    logging.getLogger("websockets").setLevel(logging.INFO if debug else logging.WARNING)


def main() -> int:
    # A .env in the working directory fills in what the environment does not set.
    load_dotenv(Path.cwd() / ".env", override=False)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        print(f"ocpp-connector: configuration error: {error}", file=sys.stderr)
        return 2
    try:
        check_state_dir(settings.state_dir)
        security = load_security(settings)
    except (StateDirError, SecurityConfigError) as error:
        print(f"ocpp-connector: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.debug)
    logging.getLogger(__name__).debug("settings: %s", settings)
    try:
        asyncio.run(service.run(settings, security))
    except ListenError as error:
        print(f"ocpp-connector: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
