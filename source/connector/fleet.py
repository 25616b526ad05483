"""Pure: the charge points the connector knows, and which of them to forget.

Without authentication (the default) anyone can connect under any identity, and every
identity that connected, booted and left used to be kept for the connector's life: its
keys, its state, its share of every available_datapoints message (24,000 identities made
a 32.6 MB listing, re-published for each new one). So a charge point that has been gone
longer than OCPP_FORGET_AFTER is forgotten, and so are the longest-gone ones beyond
`max_absent` (as many as may be connected at once): what the connector keeps is bounded
by the fleet it serves, not by every identity it ever saw. A network blip that
disconnects a whole fleet forgets none of it: those are the most recently gone, and a
fleet is no larger than what may be connected at once. A forgotten charger that comes
back is served as a new one; its keys reappear as it sends them.

`booted` marks a charge point that sent a BootNotification (to this connector, at any time
it still remembers): only such a charger has its actuators listed as soon as it connects.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)  # one per charge point
class Member:
    booted: bool = False
    absent_since: float | None = None  # seconds since 1970; None while connected


class Roster:
    def __init__(self, forget_after: float, max_absent: int, clock: Callable[[], float] = time.time) -> None:
        self.forget_after = forget_after
        self.max_absent = max_absent
        self._clock = clock
        self.members: dict[str, Member] = {}
        self.changed: dict[str, Member] = {}  # since the store last took them
        self.forgotten: list[str] = []  # likewise

    def restore(self, members: dict[str, Member]) -> None:
        """The roster from before a restart: whoever was connected then is absent since now."""
        now = self._clock()
        for cp, member in members.items():
            absent_since = now if member.absent_since is None else member.absent_since
            self.members[cp] = Member(member.booted, absent_since)

    def merge(self, cp: str, member: Member) -> bool:
        """Another instance's word on a charge point (shared_registry.py): taken as it is (absent
        since None: connected there), not marked changed (the store has it). Booted stays booted.
        True if it made the charge point booted here."""
        mine = self.members.get(cp)
        was_booted = mine is not None and mine.booted
        if mine is None:
            mine = self.members[cp] = Member()
        mine.booted = was_booted or member.booted
        mine.absent_since = member.absent_since
        return mine.booted and not was_booted

    def drop(self, cp: str) -> None:
        """Forgotten by another instance: gone here too, without telling the store again."""
        self.members.pop(cp, None)
        self.changed.pop(cp, None)

    def pending(self, cp: str) -> bool:
        """Whether a change of this charge point waits for the store: it is newer than what others said."""
        return cp in self.changed or cp in self.forgotten

    def arrived(self, cp: str) -> Member:
        member = self.members.setdefault(cp, Member())
        member.absent_since = None
        self.changed[cp] = member
        return member

    def left(self, cp: str) -> None:
        member = self.members.get(cp)
        if member is not None:
            member.absent_since = self._clock()
            self.changed[cp] = member

    def booted(self, cp: str) -> bool:
        """Mark the charge point booted; True if it was not before."""
        member = self.members.setdefault(cp, Member())
        first = not member.booted
        member.booted = True
        self.changed[cp] = member
        return first

    def is_booted(self, cp: str) -> bool:
        member = self.members.get(cp)
        return member is not None and member.booted

    def due(self, limit: int) -> list[str]:
        """At most `limit` charge points to forget now, longest gone first: those gone longer
        than forget_after, and the longest gone beyond `max_absent` absent ones."""
        absent = [(m.absent_since, cp) for cp, m in self.members.items() if m.absent_since is not None]
        horizon = self._clock() - self.forget_after
        gone_too_long = sum(1 for since, _ in absent if since < horizon)
        count = min(max(gone_too_long, len(absent) - self.max_absent), limit)
        return [cp for _, cp in heapq.nsmallest(count, absent)] if count > 0 else []

    def forget(self, cp: str) -> None:
        self.members.pop(cp, None)
        self.changed.pop(cp, None)
        self.forgotten.append(cp)

    def take_changes(self) -> tuple[dict[str, Member], list[str]]:
        """(members changed, charge points forgotten) since the last call, for the store."""
        changed = {cp: Member(m.booted, m.absent_since) for cp, m in self.changed.items()}
        forgotten, self.changed, self.forgotten = self.forgotten, {}, []
        return changed, forgotten
