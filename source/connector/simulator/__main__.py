"""`python -m connector.simulator`: parse the command line, log to stderr, run until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from connector.logtext import EscapingFormatter
from connector.simulator.fleet import run
from connector.simulator.options import Options, parse

LOG = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))  # the central system's words are quoted in lines
    logging.basicConfig(handlers=[handler], level=logging.INFO)
    # The libraries would log every frame (ocpp) and handshake; our lines say what happens.
    logging.getLogger("ocpp").setLevel(logging.ERROR)
    logging.getLogger("websockets").setLevel(logging.WARNING)


async def run_until_signalled(options: Options) -> None:
    """Run the fleet; the first SIGINT or SIGTERM stops it (each charger closes its connection)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in STOP_SIGNALS:
        loop.add_signal_handler(stop_signal, stop.set)
    try:
        await run(options, stop)
    finally:
        for stop_signal in STOP_SIGNALS:
            loop.remove_signal_handler(stop_signal)


def main(arguments: list[str] | None = None) -> int:
    options = parse(arguments)
    configure_logging()
    LOG.info(
        "simulating %d OCPP %s charger(s) %s against %s, meter values every %g s; Ctrl-C stops",
        options.chargers,
        options.ocpp,
        _names(options),
        options.url,
        options.interval,
    )
    asyncio.run(run_until_signalled(options))
    LOG.info("simulator stopped")
    return 0


def _names(options: Options) -> str:
    names = options.names()
    return names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"


if __name__ == "__main__":
    sys.exit(main())
