"""Pure: which id tags may charge (Authorize, StartTransaction, remote starts).

The operator's choice (OCPP_ALLOWED_ID_TAGS): unset, every tag is accepted (most BEMCom
sites authorise at the charger or not at all); set, only the listed tags. Tags compare
case-insensitively: RFID readers differ in how they print the same UID in hex.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IdTagPolicy:
    allowed: frozenset[str] | None = None  # upper-cased; None: accept all

    @classmethod
    def allow_list(cls, tags: list[str]) -> IdTagPolicy:
        return cls(frozenset(tag.strip().upper() for tag in tags if tag.strip()))

    def allows(self, id_tag: str) -> bool:
        return self.allowed is None or id_tag.strip().upper() in self.allowed

    def id_tag_info(self, id_tag: str) -> dict[str, str]:
        """IdTagInfo for an answer: Accepted, or Invalid (OCPP 1.6 7.2 AuthorizationStatus)."""
        return {"status": "Accepted" if self.allows(id_tag) else "Invalid"}
