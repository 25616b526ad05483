"""The simulator's command line: `python -m connector.simulator --url ws://HOST:PORT ...`.

A bad argument ends the program with status 2 and one line on stderr (argparse alone
would print the usage first); `--help` prints the usage and exits 0.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import quote, urlsplit

from connector import __version__

PROGRAM = "python -m connector.simulator"
VERSIONS = ("1.6", "2.0.1")  # what the simulator speaks
MAX_CHARGERS = 100_000
MAX_PREFIX = 40


@dataclass(frozen=True)
class Options:
    url: str  # ws:// or wss://, the identity is appended as the last path segment
    chargers: int = 1
    ocpp: str = "1.6"
    interval: float = 10.0  # s between meter values
    prefix: str = "SIM"

    def names(self) -> list[str]:
        return [f"{self.prefix}-{number}" for number in range(1, self.chargers + 1)]

    def url_of(self, name: str) -> str:
        """The charger's URL: the central system's, its identity (percent-encoded) appended."""
        return f"{self.url.rstrip('/')}/{quote(name, safe='')}"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _url(text: str) -> str:
    try:
        parts = urlsplit(text)
        _ = parts.port  # a port that is no number raises here
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is no URL: {error}") from error
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} must look like ws://HOST:PORT or wss://HOST:PORT")
    return text


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_CHARGERS:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number from 1 to {MAX_CHARGERS}")
    return number


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds > 0")
    return seconds


def _version(text: str) -> str:
    if text in VERSIONS:
        return text
    raise argparse.ArgumentTypeError(f"{text!r} must be one of {', '.join(VERSIONS)}")


def _prefix(text: str) -> str:
    if not text or len(text) > MAX_PREFIX or not text.isprintable() or text != text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 to {MAX_PREFIX} printable characters")
    return text


def parser() -> argparse.ArgumentParser:
    described = OneLineParser(
        prog=PROGRAM,
        description=(
            "Simulated OCPP charge points for trying the connector without hardware: each boots, "
            "starts a transaction, sends meter values (power, energy, current and voltage per phase, "
            "SoC) every interval and obeys charging limits and the connector's other commands. "
            "Runs until Ctrl-C or SIGTERM."
        ),
    )
    described.add_argument("--url", required=True, type=_url, help="the connector's OCPP address, ws://HOST:PORT")
    described.add_argument("--chargers", type=_count, default=1, metavar="N", help="how many chargers (default 1)")
    described.add_argument(
        "--ocpp", type=_version, default="1.6", metavar="{1.6,2.0.1}", help="OCPP version (default 1.6)"
    )
    described.add_argument(
        "--interval", type=_seconds, default=10.0, metavar="S", help="seconds between meter values (default 10)"
    )
    described.add_argument(
        "--prefix", type=_prefix, default="SIM", help="charger names are PREFIX-1 .. PREFIX-N (default SIM)"
    )
    described.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return described


def parse(arguments: list[str] | None = None) -> Options:
    """Options from the command line; exits 0 for --help/--version, 2 for a bad argument."""
    given = parser().parse_args(sys.argv[1:] if arguments is None else arguments)
    return Options(given.url, given.chargers, given.ocpp, given.interval, given.prefix)
