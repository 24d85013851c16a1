"""/api/v1/admin: operators, credit grants and debits, agent suspension, the accounts of the ledger."""

from __future__ import annotations

from litestar import Controller
from litestar.di import NamedDependency
from litestar.params import JSONBody

from app.http.envelope import Envelope, Paged, ok
from app.http.handlers import get, post
from app.http.pagination import DEFAULT_LIMIT, id_page
from app.http.params import (
    AccountKindFilter,
    AgentId,
    Cursor,
    Limit,
    OperatorId,
    RowFilter,
    TransferKindFilter,
    parse_id,
)
from app.http.respond import respond
from app.http.routes.docs import errors
from app.http.schemas.credits import (
    AccountOut,
    AuditOut,
    CreditAdjustIn,
    CreditAdjustOut,
    InvariantOut,
    TransferOut,
)
from app.http.schemas.operators import ManagedAgentOut, OperatorCreatedOut, OperatorIn
from app.http.security import admin_only
from app.services import admin, audit, credits, operators
from app.services.uow import UnitOfWork
from domain.error_codes import AGENT_NOT_FOUND, INSUFFICIENT_CREDITS, INVALID_STATUS, OPERATOR_NOT_FOUND
from domain.ledger import AccountKind


class AdminController(Controller):
    path = "/api/v1/admin"
    tags = ["admin"]
    guards = [admin_only]
    security = [{"adminKey": []}]

    @post(
        "/operators",
        operation_id="createOperator",
        status_code=201,
    )
    async def create_operator(
        self, data: JSONBody[OperatorIn], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[OperatorCreatedOut]:
        """Create an operator with its wallet (and the 500-credit welcome bonus); its key is shown once."""
        return await respond(
            uow,
            operators.create_operator(uow, name=data.name),
            lambda created: ok(
                OperatorCreatedOut(
                    id=created.operator.id,
                    name=created.operator.name,
                    api_key=created.api_key,
                    credit_balance=created.credit_balance,
                    created_at=created.operator.created_at,
                )
            ),
        )

    @post(
        "/operators/{operator_id:str}/credits",
        operation_id="adjustOperatorCredits",
        status_code=201,
        responses=errors(OPERATOR_NOT_FOUND, INSUFFICIENT_CREDITS),
    )
    async def adjust_credits(
        self, operator_id: OperatorId, data: JSONBody[CreditAdjustIn], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[CreditAdjustOut]:
        """Grant (amount > 0) or debit (amount < 0) an operator's wallet; a debit never overdraws it."""
        wallet_owner = parse_id(operator_id, "Operator")
        return await respond(
            uow,
            credits.adjust_operator(uow, operator_id=wallet_owner, amount=data.amount, reason=data.reason),
            lambda posted: ok(
                CreditAdjustOut(
                    transfer_id=posted.transfer_id,
                    operator_id=wallet_owner,
                    amount=posted.amount,
                    balance_after=posted.balance_after,
                )
            ),
        )

    @post(
        "/agents/{agent_id:str}/suspend",
        operation_id="suspendAgent",
        status_code=200,
        responses=errors(AGENT_NOT_FOUND),
    )
    async def suspend(self, agent_id: AgentId, uow: NamedDependency[UnitOfWork]) -> Envelope[ManagedAgentOut]:
        """Suspend an agent: its key is refused (403) until an admin reactivates it."""
        return await respond(
            uow, admin.suspend_agent(uow, parse_id(agent_id, "Agent")), lambda agent: ok(ManagedAgentOut.of(agent))
        )

    @post(
        "/agents/{agent_id:str}/reactivate",
        operation_id="reactivateAgent",
        status_code=200,
        responses=errors(AGENT_NOT_FOUND, INVALID_STATUS),
    )
    async def reactivate(self, agent_id: AgentId, uow: NamedDependency[UnitOfWork]) -> Envelope[ManagedAgentOut]:
        """Lift a suspension."""
        return await respond(
            uow, admin.reactivate_agent(uow, parse_id(agent_id, "Agent")), lambda agent: ok(ManagedAgentOut.of(agent))
        )

    @get("/accounts", operation_id="listAccounts")
    async def accounts(
        self,
        uow: NamedDependency[UnitOfWork],
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
        kind: AccountKindFilter = None,
    ) -> Paged[list[AccountOut]]:
        """Every ledger account with its balance, by id."""
        account_kind = AccountKind(kind) if kind else None
        return await id_page(
            cursor,
            limit,
            lambda last, n: admin.list_accounts(uow, after_id=last or 0, limit=n, kind=account_kind),
            AccountOut.of,
        )

    @get("/ledger/audit", operation_id="auditLedger")
    async def audit(self, uow: NamedDependency[UnitOfWork]) -> Envelope[AuditOut]:
        """Check every ledger invariant (L1-L12) on one snapshot; `ok` is false when any is violated."""
        report = await audit.run_audit(uow)
        return ok(
            AuditOut(
                ok=report.ok,
                violations=report.violations,
                entries=report.entries,
                ledger_hash=report.ledger_hash,
                invariants={
                    name: InvariantOut(violations=count, description=report.descriptions[name])
                    for name, count in report.violations.items()
                },
            )
        )

    @get("/ledger/transfers", operation_id="listTransfers")
    async def transfers(
        self,
        uow: NamedDependency[UnitOfWork],
        account: RowFilter = None,
        task: RowFilter = None,
        kind: TransferKindFilter = None,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[TransferOut]]:
        """Ledger transfers with their entries, newest first; filter by account, task or kind."""
        return await id_page(
            cursor,
            limit,
            lambda last, n: admin.list_transfers(
                uow, before_id=last, limit=n, account_id=account, task_id=task, kind=kind.value if kind else None
            ),
            TransferOut.of,
        )
