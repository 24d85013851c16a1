"""Readiness: the database answers and its schema is at the migrations' head."""

from __future__ import annotations

from dataclasses import dataclass

from app.repo import health
from app.repo.connections import ConnectionLease


@dataclass(frozen=True, slots=True)
class Readiness:
    database: bool
    schema_revision: str | None
    expected_revision: str | None

    @property
    def ready(self) -> bool:
        return self.database and self.schema_revision == self.expected_revision


async def readiness(lease: ConnectionLease, expected_revision: str | None) -> Readiness:
    try:
        revision = await health.schema_revision(await lease.connection())
    except Exception:
        return Readiness(False, None, expected_revision)
    return Readiness(True, revision, expected_revision)
