"""logtext: which characters count as control characters and how they are shown."""

from __future__ import annotations

import pytest

from connector.logtext import escaped, has_control_characters

CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]  # C0, DEL, C1


@pytest.mark.parametrize("code", CONTROLS, ids=[f"U+{c:04X}" for c in CONTROLS])
def test_every_c0_del_and_c1_character_is_a_control_shown_as_hex(code: int) -> None:
    """Each C0 control, DEL and each C1 control is detected and written as `\\xNN`."""
    text = f"CP{chr(code)}1"
    assert has_control_characters(text)
    assert escaped(text) == f"CP\\x{code:02x}1"


@pytest.mark.parametrize("text", ["CP_1", "Ladesäule 7", "\u00a0nbsp", "\u20ac", "\u200b", "~ !"])
def test_printable_text_is_left_as_it_is(text: str) -> None:
    """Printable characters, non-ASCII ones included, are neither flagged nor changed."""
    assert not has_control_characters(text)
    assert escaped(text) == text


SEPARATORS_AND_BIDI = [0x200E, 0x200F, *range(0x2028, 0x202F), *range(0x2066, 0x206A)]


@pytest.mark.parametrize("code", SEPARATORS_AND_BIDI, ids=[f"U+{c:04X}" for c in SEPARATORS_AND_BIDI])
def test_line_separators_and_bidi_controls_are_controls_shown_as_hex(code: int) -> None:
    """U+2028/2029 (line breaks to log viewers) and the bidi controls (a right-to-left override) are escaped."""
    text = f"CP{chr(code)}1"
    assert has_control_characters(text)
    assert escaped(text) == f"CP\\u{code:04x}1"
