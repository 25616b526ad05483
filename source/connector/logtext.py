"""Text from peers in log lines: control characters shown escaped, never written raw.

A charge point chooses its identity, action names, ids and error descriptions; with a
newline or an escape sequence among them it could forge log lines or drive the operator's
terminal. `escaped` is for quoting such text on purpose; `EscapingFormatter` escapes every
message written to stderr, so a line that quotes a peer without thinking is safe as well.
"""

from __future__ import annotations

import logging
import re

# C0 controls, DEL and the C1 controls (U+0080..U+009F, NEL among them). A regex rather
# than str.translate: every stderr line passes here, and a scan that finds nothing (the
# usual case) costs a fifth of a translation (0.4 against 2 µs for a 120-character line).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def _hex(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def escaped(text: str) -> str:
    """`text` with each control character written as `\\xNN`."""
    return _CONTROL.sub(_hex, text)


class EscapingFormatter(logging.Formatter):
    """Escapes control characters in the formatted message; a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        # format() calls this for the message line only and appends exc_text and
        # stack_info afterwards, so tracebacks stay readable.
        return escaped(super().formatMessage(record))
