"""The id-tag policy: accept all by default, or an operator's allow-list, case-insensitively."""

from __future__ import annotations

import pytest

from connector.authorization import IdTagPolicy
from connector.settings import Settings


def test_default_policy_accepts_every_tag() -> None:
    """Without OCPP_ALLOWED_ID_TAGS every id tag is Accepted."""
    policy = Settings.from_env({}).id_tags
    assert policy.allows("ANYTHING") and policy.id_tag_info("04A2B3") == {"status": "Accepted"}


@pytest.mark.parametrize(
    ("tag", "status"),
    [
        ("04A2B3C4", "Accepted"),
        ("04a2b3c4", "Accepted"),
        (" 04A2B3C4 ", "Accepted"),
        ("FFFF", "Accepted"),
        ("04A2B3C5", "Invalid"),
        ("", "Invalid"),
    ],
)
def test_allow_list_from_settings(tag: str, status: str) -> None:
    """OCPP_ALLOWED_ID_TAGS (comma-separated) accepts only its tags, in any case, and answers Invalid otherwise."""
    policy = Settings.from_env({"OCPP_ALLOWED_ID_TAGS": "04A2B3C4, ffff,"}).id_tags
    assert policy.id_tag_info(tag) == {"status": status}


def test_empty_allow_list_accepts_nobody() -> None:
    """An allow-list of only separators admits no tag."""
    assert not IdTagPolicy.allow_list([",", " "]).allows("04A2B3C4")
