"""Text from peers in log lines: control characters shown escaped, never written raw.

A charge point chooses its identity, action names, ids and error descriptions; with a
newline or an escape sequence among them it could forge log lines or drive the operator's
terminal. `escaped` is for quoting such text on purpose; `EscapingFormatter` escapes every
message written to stderr, so a line that quotes a peer without thinking is safe as well.
"""

from __future__ import annotations

import logging
import re

# C0 controls, DEL and the C1 controls (U+0080..U+009F, NEL among them), the line and
# paragraph separators (U+2028, U+2029: line breaks to many log viewers) and the
# bidirectional formatting controls (U+200E, U+200F, U+202A..U+202E, U+2066..U+2069: they
# reorder what a terminal shows, e.g. a right-to-left override). A regex rather than
# str.translate: every stderr line passes here, and a scan that finds nothing (the usual
# case) costs a fifth of a translation (0.4 against 2 µs for a 120-character line).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def _hex(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escaped(text: str) -> str:
    """`text` with each control character written as `\\xNN` (or `\\uNNNN`)."""
    return _CONTROL.sub(_hex, text)


class EscapingFormatter(logging.Formatter):
    """Escapes control characters in the formatted message; a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        # format() calls this for the message line only and appends exc_text and
        # stack_info afterwards, so tracebacks stay readable.
        return escaped(super().formatMessage(record))
