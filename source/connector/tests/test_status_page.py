"""The status page: escaped, paged and searchable, cheap with a fleet, and right in a real browser."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

from connector.datapoints import Datapoint
from connector.observed import METER_VALUES_KEPT, STATUSES_KEPT, LastCommand, Observed
from connector.status_page import PAGE_SIZE, Broker, Request, Shown, render
from connector.tests.conftest import RunningConnector, command, wire
from connector.tests.harness import WAIT_S, ChargerLink, MqttProbe, http_request, send
from connector.tests.test_ops_http import ops_port

BROKER = Broker("127.0.0.1:1883", connected=True, queued=0, dropped=0)
SCRIPT_ID = "<script>document.title='pwned'</script>"
CHROMIUM_TIMEOUT_S = 60.0  # a first start on a loaded machine
FLEET = 10_000


@dataclass
class FakeSession:
    """What the page reads of a session, nothing more."""

    ocpp_version: str = "1.6"
    observed: Observed = field(default_factory=Observed)


def metered(cp: str) -> FakeSession:
    """A session whose last MeterValues had the 8 values of the recorded frame."""
    session = FakeSession()
    session.observed.note_status(1, "Charging")
    session.observed.note_meter(
        [
            Datapoint(f"{cp}__MeterValues__1__{name}", 1000.5 + n, 1795256100000)
            for n, name in enumerate(
                ["Energy.Active.Import.Register__Wh", "Power.Active.Import__W"]
                + [f"Voltage__L{p}-N__V" for p in (1, 2, 3)]
                + [f"Current.Import__L{p}__A" for p in (1, 2, 3)]
            )
        ]
    )
    session.observed.command = LastCommand(f"{cp}__execute_trigger_message", "Accepted", 1795256100000)
    return session


class Rows(HTMLParser):
    """The text of each cell of the charge point table's rows, and the page's title."""

    def __init__(self, document: str) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.title = ""
        self._in: list[str] = []
        self._body = False
        self.feed(document)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in.append(tag)
        if tag == "tbody":
            self._body = True
        elif tag == "tr" and self._body:
            self.rows.append([])
        elif tag == "td" and self._body:
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._body = False
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        if "title" in self._in[-1:]:
            self.title += data
        elif self._body and self.rows and self.rows[-1] and "td" in self._in:
            self.rows[-1][-1] += data

    def identities(self) -> list[str]:
        return [row[0] for row in self.rows]


# -- rendering -------------------------------------------------------------------------


def test_an_identity_with_markup_is_shown_as_text() -> None:
    """A charger named `<script>...` appears escaped: the page holds no script element, and reads back the name."""
    page = render({SCRIPT_ID: metered(SCRIPT_ID)}, Request(), BROKER, "0.2.0")
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert Rows(page).identities() == [SCRIPT_ID]


def test_a_row_shows_version_status_values_and_command() -> None:
    """A row has the identity, OCPP version, connection time, status per connector, values and last command."""
    page = render({"CP_1": metered("CP_1")}, Request(), BROKER, "0.2.0")
    ((identity, version, since, status, values, last_command),) = Rows(page).rows
    assert (identity, version) == ("CP_1", "1.6")
    assert since.endswith("UTC")
    assert status == "1: Charging"
    assert "1__Power.Active.Import__W = 1001.5" in values and "CP_1__MeterValues" not in values
    assert last_command.startswith("execute_trigger_message: Accepted")


def test_the_broker_state_is_shown() -> None:
    """The page says whether the broker is connected, and what is queued and dropped."""
    down = Broker("broker.example:1883", connected=False, queued=12, dropped=3)
    page = render({}, Request(), down, "0.2.0")
    assert "broker.example:1883" in page and "disconnected" in page
    assert "12 messages queued, 3 dropped" in page


def fleet(size: int) -> dict[str, FakeSession]:
    """`size` metered sessions, in a shuffled order (as chargers connect), so the page must sort them."""
    identities = [f"CP_{n:05d}" for n in range(size)]
    random.Random(size).shuffle(identities)
    return {cp: metered(cp) for cp in identities}


def test_pages_hold_page_size_charge_points_in_identity_order() -> None:
    """120 chargers make three pages (50, 50, 20) in identity order; a page beyond the last shows the last."""
    sessions = fleet(120)
    pages = [Rows(render(sessions, Request(page=n), BROKER, "v")).identities() for n in (1, 2, 3, 9)]
    assert [len(p) for p in pages] == [PAGE_SIZE, PAGE_SIZE, 20, 20]
    assert pages[0][0] == "CP_00000" and pages[2][-1] == "CP_00119"
    assert pages[3] == pages[2]


def test_search_narrows_by_identity_case_insensitively() -> None:
    """A search keeps the identities containing it, whatever the case, and says how many matched."""
    page = render(fleet(120), Request(search="cp_0011"), BROKER, "v")
    assert Rows(page).identities() == [f"CP_{n:05d}" for n in range(110, 120)]
    assert "10 matching" in page


@dataclass
class CountingSessions(Mapping[str, Shown]):
    """A fleet that counts how many sessions are read (by key or by values())."""

    sessions: dict[str, FakeSession]
    reads: int = 0

    def __getitem__(self, cp: str) -> Shown:
        self.reads += 1
        return self.sessions[cp]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sessions)

    def __len__(self) -> int:
        return len(self.sessions)


def test_a_page_of_a_10000_charger_fleet_reads_only_its_50() -> None:
    """With 10,000 chargers a page reads the 50 sessions it shows, not all (its time is printed, not asserted)."""
    sessions = CountingSessions(fleet(FLEET))
    timings = []
    for request in (Request(page=7), Request(search="CP_09", page=2)):
        sessions.reads = 0
        started = time.perf_counter()
        page = render(sessions, request, BROKER, "v")
        timings.append(time.perf_counter() - started)
        assert sessions.reads == PAGE_SIZE
        assert len(Rows(page).rows) == PAGE_SIZE
    print(f"page of {PAGE_SIZE} among {FLEET}: {timings[0] * 1e3:.1f} ms; searched: {timings[1] * 1e3:.1f} ms")


def test_odd_query_values_fall_back_to_the_first_page() -> None:
    """A page number that is not a positive whole number means page 1; a long search is cut."""
    assert Request.from_query({"page": "-3"}).page == 1
    assert Request.from_query({"page": "9" * 50}).page == 1
    assert Request.from_query({"page": "٣"}).page == 1  # a digit, but not ASCII
    assert len(Request.from_query({"q": "x" * 10_000}).search) == 200


def test_a_meter_timestamp_out_of_range_does_not_break_the_page() -> None:
    """A value stamped far beyond any calendar renders as such instead of failing the page."""
    session = metered("CP_1")
    session.observed.note_meter([Datapoint("CP_1__MeterValues__1__Power.Active.Import__W", 1, 10**20)])
    assert "(time out of range)" in render({"CP_1": session}, Request(), BROKER, "v")


# -- served by the connector, seen in a real browser -------------------------------------


async def test_the_page_is_served_with_a_policy_that_allows_no_script(connector: RunningConnector) -> None:
    """GET / is HTML with a Content-Security-Policy that allows no script."""
    answer = await http_request(ops_port(connector), "/")
    assert answer.status == 200 and answer.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in answer.headers["content-security-policy"]


async def chromium_dom(url: str, profile: Path) -> str:
    """The DOM a headless Chromium rendered for `url`."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser is not None, "chromium is missing: ./test.sh installs it (scripts/setup.sh, ensure_chromium)"
    process = await asyncio.create_subprocess_exec(
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(CHROMIUM_TIMEOUT_S):
            dom, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, dom[-2000:]
    return dom.decode()


async def test_a_browser_shows_connected_chargers_and_the_search_narrows_them(
    connector: RunningConnector, probe: MqttProbe, tmp_path: Path
) -> None:
    """In headless Chromium the page lists each connected charger with its status, values and command;
    a search shows only the matching one, and a `<script>` identity is text that never ran."""
    trigger = "CP_browser__execute_trigger_message"
    async with (
        ChargerLink(connector.url, "CP_browser") as charger,
        ChargerLink(connector.url, quote(SCRIPT_ID, safe="")),
    ):
        for frame in ("boot_notification", "status_available", "meter_values_8"):
            await send(charger, frame)
        ((cmd, status),) = (await wire(probe, connector, trigger)).values()
        probe.publish(cmd, command(3))
        await probe.wait_value(status, "Accepted", within=WAIT_S)
        base = f"http://127.0.0.1:{ops_port(connector)}/"
        everyone = Rows(await chromium_dom(base, tmp_path / "profile"))
        narrowed = Rows(await chromium_dom(f"{base}?q=browser", tmp_path / "profile"))
    assert sorted(everyone.identities()) == sorted(["CP_browser", SCRIPT_ID])
    assert everyone.title == "OCPP connector"  # the script in the identity never ran
    (row,) = narrowed.rows
    assert row[0] == "CP_browser" and row[1] == "1.6"
    assert row[3] == "1: Available"
    assert "1__Power.Active.Import__W = 11040.5" in row[4]
    assert row[5].startswith("execute_trigger_message: Accepted")


def test_what_a_connection_shows_is_bounded_whatever_the_charger_sends() -> None:
    """Statuses of at most STATUSES_KEPT connectors and the first values of a 2,000-value MeterValues are kept."""
    seen = Observed()
    for connector_id in range(10_000):
        seen.note_status(connector_id, "Available")
    seen.note_status(0, "Faulted")  # a connector already shown is still updated
    seen.note_meter([Datapoint(f"CP_1__MeterValues__1__X{n}__W", n, 1) for n in range(2000)])
    assert len(seen.statuses) == STATUSES_KEPT and seen.statuses[0] == "Faulted"
    assert len(seen.meter) == METER_VALUES_KEPT and seen.meter_count == 2000
    page = render({"CP_1": FakeSession(observed=seen)}, Request(), BROKER, "0.3.0")
    assert f"{2000 - METER_VALUES_KEPT} more" in page
