"""The read-only status page for people: connected charge points and the broker, as HTML.

Server-rendered, no script: identities, statuses and values are charger-controlled text,
so everything shown is escaped (and the server's Content-Security-Policy allows no script
at all). Usable with a fleet: a page shows PAGE_SIZE charge points, and a search narrows
them by identity. Off the hot path, and cheap when asked: one pass over the identities
(to filter and sort them), then only the page's own charge points are read.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlencode

from connector.observed import METER_VALUES_KEPT, Observed

PAGE_SIZE = 50
METER_VALUES_SHOWN = METER_VALUES_KEPT  # of the last MeterValues; the rest are counted
MAX_TEXT = 80  # characters of charger-controlled text shown in a cell
MAX_QUERY = 200  # characters of a search

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}
.up{color:#0a0}.down{color:#c00;font-weight:bold}
.muted{color:#777}
nav a{margin-right:1em}
ul{margin:0;padding:0;list-style:none}
td:nth-child(n+2):nth-child(-n+4){white-space:nowrap}
"""


class Shown(Protocol):
    """What the page reads of a charge point's session."""

    @property
    def ocpp_version(self) -> str: ...

    @property
    def observed(self) -> Observed: ...


@dataclass(frozen=True)
class Broker:
    address: str  # host:port
    connected: bool
    queued: int  # messages not yet acknowledged
    dropped: int


@dataclass(frozen=True)
class Request:
    """The page asked for: a search text and a 1-based page number."""

    search: str = ""
    page: int = 1

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Request:
        raw = query.get("page", "1")
        page = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 1
        return cls(query.get("q", "")[:MAX_QUERY].strip(), max(page, 1))


def text(value: object, limit: int = MAX_TEXT) -> str:
    """Escaped for HTML, and cut short: a charger may send long strings."""
    shown = str(value)
    if len(shown) > limit:
        shown = shown[:limit] + "…"
    return html.escape(shown)


def utc(seconds: float) -> str:
    """A time as people read it; a charger's meter timestamp may be far off, even out of range."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "(time out of range)"


def matching(identities: Mapping[str, Shown], search: str) -> list[str]:
    """The identities containing `search` (case-insensitive), sorted: one pass, no values read."""
    if not search:
        return sorted(identities)
    needle = search.casefold()
    return sorted(cp for cp in identities if needle in cp.casefold())


def render(sessions: Mapping[str, Shown], request: Request, broker: Broker, version: str) -> str:
    """The whole page: the broker, the search form, one page of charge points, the pager."""
    found = matching(sessions, request.search)
    pages = max(1, math.ceil(len(found) / PAGE_SIZE))
    page = min(request.page, pages)
    shown = found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    rows = "\n".join(_row(cp, sessions[cp]) for cp in shown)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>OCPP connector</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>OCPP connector <span class="muted">{text(version)}</span></h1>
{_broker(broker)}
<p id="summary">{len(sessions)} charge points connected{_narrowed(request.search, len(found))}.</p>
<form method="get" action="/"><input type="search" name="q" value="{text(request.search, MAX_QUERY)}"
 placeholder="identity contains…" aria-label="search identities"> <button type="submit">Search</button></form>
<table id="charge-points"><thead><tr><th>Identity</th><th>OCPP</th><th>Connected since</th><th>Status</th>
<th>Last meter values</th><th>Last command</th></tr></thead>
<tbody>
{rows}
</tbody></table>
{_pager(request.search, page, pages)}
</body></html>
"""


def _broker(broker: Broker) -> str:
    state = '<span class="up">connected</span>' if broker.connected else '<span class="down">disconnected</span>'
    return (
        f'<p id="broker">MQTT broker {text(broker.address)}: {state};'
        f" {broker.queued} messages queued, {broker.dropped} dropped.</p>"
    )


def _narrowed(search: str, found: int) -> str:
    return f", {found} matching “{text(search, MAX_QUERY)}”" if search else ""


def _row(cp: str, session: Shown) -> str:
    seen = session.observed
    cells = (
        text(cp, 200),
        text(session.ocpp_version),
        utc(seen.connected_at),
        _statuses(seen),
        _meter(cp, seen),
        _command(cp, seen),
    )
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _statuses(seen: Observed) -> str:
    if not seen.statuses:
        return '<span class="muted">none yet</span>'
    items = (f"<li>{c}: {text(status)}</li>" for c, status in sorted(seen.statuses.items()))
    return "<ul>" + "".join(items) + "</ul>"


def _meter(cp: str, seen: Observed) -> str:
    if not seen.meter:
        return '<span class="muted">none yet</span>'
    prefix = f"{cp}__MeterValues__"  # every key of it starts so (datapoints.py builds them)
    items = [
        f"<li>{text(point.key.removeprefix(prefix))} = {text(point.value)}</li>"
        for point in seen.meter[:METER_VALUES_SHOWN]
    ]
    more = seen.meter_count - min(len(seen.meter), METER_VALUES_SHOWN)
    if more > 0:
        items.append(f'<li class="muted">{more} more</li>')
    at = utc(seen.meter[0].timestamp / 1000)
    return f'<ul>{"".join(items)}</ul><span class="muted">{at}</span>'


def _command(cp: str, seen: Observed) -> str:
    command = seen.command
    if command is None:
        return '<span class="muted">none yet</span>'
    name = command.key.removeprefix(f"{cp}__")
    return f'{text(name)}: {text(command.status, 200)}<br><span class="muted">{utc(command.at / 1000)}</span>'


def _pager(search: str, page: int, pages: int) -> str:
    def link(number: int, label: str) -> str:
        query = urlencode({"q": search, "page": number} if search else {"page": number})
        return f'<a href="/?{html.escape(query)}">{label}</a>'

    parts = [f"page {page} of {pages}"]
    if page > 1:
        parts.insert(0, link(page - 1, "← previous"))
    if page < pages:
        parts.append(link(page + 1, "next →"))
    return f'<nav id="pager">{" ".join(parts)}</nav>'
