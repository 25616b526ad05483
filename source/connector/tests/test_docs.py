"""The README and docs/: links that resolve, nothing outside the repository, the two commands first.

A newcomer follows the README alone, so a link to a moved section, a reference to a file
that is not in the repository, or a variable missing from the configuration page is a bug
like any other. Anchors are resolved the way GitHub renders headings.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

from connector.settings import VARIABLES

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]  # what a reader of the repository follows
LINKED = [*PAGES, REPO / "CHANGELOG.md"]  # pages whose relative links must resolve
TWO_COMMANDS = (
    "./run.sh     # set up and run the connector (starts a local mosquitto when no broker is reachable)\n"
    "./test.sh    # set up and run the whole test suite (lint, types, unit and end-to-end tests)\n"
)
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)


def prose(text: str) -> str:
    """Markdown without its fenced code blocks (a `#` there is a shell comment, not a heading)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: link text kept, lowercase, punctuation dropped, spaces to hyphens."""
    text = LINK.sub(r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, repeated headings numbered like GitHub does (`-1`, `-2`)."""
    seen: Counter[str] = Counter()
    found = set()
    for match in re.finditer(r"^#{1,6} (.+)$", prose(page.read_text()), re.MULTILINE):
        base = slug(match.group(1))
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def links(page: Path) -> list[str]:
    """The target of every Markdown link on a page, outside code blocks."""
    return [match.group(2) for match in LINK.finditer(prose(page.read_text()))]


def is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target) is not None  # http:, https:, mailto:, ...


def first_code_block(text: str) -> str:
    match = re.search(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert match is not None, "the README has no code block"
    return match.group(1)


@pytest.mark.parametrize("page", LINKED, ids=lambda page: page.name)
def test_relative_links_resolve_to_files_and_headings(page: Path) -> None:
    """Every relative link on the page names a file of the repository, and its anchor a heading there."""
    for target in links(page):
        if is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / unquote(path_part)).resolve() if path_part else page
        assert linked.is_relative_to(REPO), f"{page.name}: {target} leaves the repository"
        assert linked.exists(), f"{page.name}: {target} names no file"
        if anchor:
            assert linked.suffix == ".md", f"{page.name}: {target} has an anchor into a file that is not Markdown"
            assert anchor in anchors(linked), f"{page.name}: {target} names no heading of {linked.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_pages_point_nowhere_outside_the_repository(page: Path) -> None:
    """README and docs link to no web page, and name neither the project's outside contract nor an issue."""
    text = page.read_text()
    assert [target for target in links(page) if is_external(target)] == []
    assert "INTERFACE.md" not in text
    assert "shared/" not in text
    assert re.search(r"\bissues? #?\d+", text, re.IGNORECASE) is None
    assert [target for target in links(page) if re.fullmatch(r"#\d+|.*/(issues|pull)/.*", target)] == []
    assert re.search(r"(?<![\w&])#\d+\b", LINK.sub(r"\1", prose(text))) is None, "an issue number"


def test_readme_begins_with_the_two_commands() -> None:
    """The README's first code block is exactly `./run.sh` and `./test.sh` with their comments."""
    assert first_code_block(README.read_text()) == TWO_COMMANDS


def test_every_variable_is_on_the_configuration_page() -> None:
    """Each variable the connector reads (the table behind `--help`) is documented in docs/configuration.md."""
    page = (REPO / "docs" / "configuration.md").read_text()
    missing = [variable.name for variable in VARIABLES if f"`{variable.name}`" not in page]
    assert missing == []


def test_every_page_of_docs_is_linked_from_the_readme() -> None:
    """A newcomer reaches every page of docs/ from the README."""
    linked = {(REPO / target.partition("#")[0]).resolve() for target in links(README) if not is_external(target)}
    assert [page.name for page in DOCS if page.resolve() not in linked] == []


def test_slug_follows_github() -> None:
    """Anchors are made as GitHub makes them: punctuation and code marks dropped, spaces become hyphens."""
    assert slug("Known charge points: kept across restarts, forgotten when long gone") == (
        "known-charge-points-kept-across-restarts-forgotten-when-long-gone"
    )
    assert slug("Reaching a broker container by name: `--network`") == "reaching-a-broker-container-by-name---network"
    assert slug("From a clone: run.sh and its private broker") == "from-a-clone-runsh-and-its-private-broker"
    assert slug("OCPP 1.6 ⇄ MQTT connector (BEMCom)") == "ocpp-16--mqtt-connector-bemcom"
