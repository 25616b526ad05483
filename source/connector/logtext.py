"""Text from peers in log lines: control characters shown escaped, never written raw.

A charge point chooses its identity, action names, ids and error descriptions; with a
newline or an escape sequence among them it could forge log lines or drive the operator's
terminal. `escaped` is for quoting such text on purpose; `EscapingFormatter` escapes every
message written to stderr, so a line that quotes a peer without thinking is safe as well.
"""

from __future__ import annotations

import logging

# C0 controls, DEL and the C1 controls (U+0080..U+009F, NEL among them).
CONTROL_CODES = (*range(0x20), *range(0x7F, 0xA0))
_ESCAPES = {code: f"\\x{code:02x}" for code in CONTROL_CODES}
_CONTROLS = frozenset(map(chr, CONTROL_CODES))


def has_control_characters(text: str) -> bool:
    return not _CONTROLS.isdisjoint(text)


def escaped(text: str) -> str:
    """`text` with each control character written as `\\xNN`."""
    return text.translate(_ESCAPES)


class EscapingFormatter(logging.Formatter):
    """Escapes control characters in the formatted message; a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        # format() calls this for the message line only and appends exc_text and
        # stack_info afterwards, so tracebacks stay readable.
        return escaped(super().formatMessage(record))
