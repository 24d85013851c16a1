"""The ledger audit: every invariant counted on one consistent snapshot, and a hash of the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from app.repo import audit as audit_queries
from app.repo import transactions
from app.services.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class AuditReport:
    violations: dict[str, int]
    descriptions: dict[str, str]
    entries: int
    ledger_hash: str

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())


async def run_audit(uow: UnitOfWork) -> AuditReport:
    async with uow:
        # One snapshot for every query, so concurrent transfers cannot show as a false violation.
        await transactions.repeatable_read(uow.connection)
        violations = await audit_queries.count_violations(uow.connection)
        entries, digest = await audit_queries.ledger_hash(uow.connection)
        await uow.commit()
    descriptions = {name: text for name, (text, _) in audit_queries.INVARIANTS.items()}
    return AuditReport(violations, descriptions, entries, digest)
