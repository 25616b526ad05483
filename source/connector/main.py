"""Entry point (BEMCom convention): arguments -> settings -> logging -> the service until a signal."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from dotenv import load_dotenv

from connector import __version__, service
from connector.logtext import EscapingFormatter
from connector.memory import limit_malloc_arenas
from connector.ocpp_server import ListenError
from connector.security import SecurityConfigError
from connector.security import load as load_security
from connector.settings import Settings, SettingsError, usage
from connector.shared import InstanceNameTakenError
from connector.transactions import StateDirError, check_state_dir

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PROGRAM = "ocpp-connector"


def configure_logging(debug: bool, instance: str | None = None) -> None:
    """`instance`: several instances run (STATE_URL); each line names this one."""
    handler = logging.StreamHandler(sys.stderr)
    # Chargers choose much of what is logged (identities, actions, frames): no raw control
    # characters may reach the terminal or a line-based log collector.
    line_format = LOG_FORMAT if instance is None else LOG_FORMAT.replace("%(name)s", f"[{instance}] %(name)s")
    handler.setFormatter(EscapingFormatter(line_format))
    logging.basicConfig(handlers=[handler])
    logging.getLogger().setLevel(logging.DEBUG if debug else logging.INFO)
    # The libraries log every frame or handshake at INFO/DEBUG; at fleet scale that
    # floods N/logs. Our own lines already name each charge point and refusal.
    logging.getLogger("ocpp").setLevel(logging.DEBUG if debug else logging.WARNING)
    # Never DEBUG for websockets: at that level it logs every request header, credentials
    # (Authorization: Basic ...) included.
    logging.getLogger("websockets").setLevel(logging.INFO if debug else logging.WARNING)


def answer_arguments(arguments: list[str]) -> int | None:
    """`--help` and `--version` are answered here (exit status); None: no arguments, run."""
    if not arguments:
        return None
    if arguments in (["--help"], ["-h"]):
        print(usage())
        return 0
    if arguments == ["--version"]:
        print(f"{PROGRAM} {__version__}")
        return 0
    print(f"{PROGRAM}: unknown arguments {' '.join(arguments)[:80]!r}; use --help or --version", file=sys.stderr)
    return 2


def main(arguments: list[str] | None = None) -> int:
    answered = answer_arguments(sys.argv[1:] if arguments is None else arguments)
    if answered is not None:
        return answered
    limit_malloc_arenas()  # the process's own environment: glibc never sees what .env sets
    # A .env in the working directory fills in what the environment does not set.
    load_dotenv(Path.cwd() / ".env", override=False)
    try:
        settings = Settings.from_env(os.environ)
        check_state_dir(settings.state_dir)
        security = load_security(settings)
    except (SettingsError, StateDirError, SecurityConfigError) as error:
        print(f"{PROGRAM}: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.debug, settings.connector_instance if settings.state_url else None)
    logger = logging.getLogger(__name__)
    logger.info("%s %s starting", PROGRAM, __version__)
    logger.debug("settings: %s", settings)
    # Not asyncio.run: at its end it cancels every task left and waits for each, and the
    # service has already waited, bounded, for what matters (service.BACKGROUND_STOP_S).
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(service.run(settings, security))
    except (ListenError, InstanceNameTakenError) as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 2
    exit_now(0)
    return 0  # not reached


def exit_now(status: int) -> None:
    """Exit without tearing down the interpreter object by object.

    Everything that matters is done: chargers closed, MQTT flushed and disconnected, state
    saved and closed. With 10,000 chargers connected the interpreter's teardown (a last
    full garbage collection and the freeing of millions of objects) would take a
    noticeable part of the 5 s a SIGTERM may take (the contract of section 1).
    """
    logging.shutdown()  # handlers flushed and closed
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
