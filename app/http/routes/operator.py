"""/api/v1/operator: an operator's own profile, agents, keys and wallet statement."""

from __future__ import annotations

from litestar import Controller
from litestar.di import NamedDependency
from litestar.params import JSONBody

from app.http.envelope import Envelope, Paged, ok
from app.http.handlers import get, post
from app.http.pagination import DEFAULT_LIMIT, id_page
from app.http.params import AgentId, Cursor, Limit, parse_id
from app.http.respond import respond
from app.http.routes.docs import errors
from app.http.routes.statements import statement_page
from app.http.schemas.credits import CreditsOut
from app.http.schemas.operators import (
    AgentIn,
    ClaimAgentIn,
    ManagedAgentOut,
    ManagedAgentWithKeyOut,
    OperatorMeOut,
)
from app.http.security import operator_only
from app.services import operators
from app.services.auth import Principal
from app.services.uow import UnitOfWork
from domain.error_codes import AGENT_NOT_FOUND, CATEGORY_NOT_FOUND, INVALID_STATUS


class OperatorController(Controller):
    path = "/api/v1/operator"
    tags = ["operator"]
    guards = [operator_only]
    security = [{"operatorKey": []}]

    @get("/me", operation_id="getOperator")
    async def me(
        self, principal: NamedDependency[Principal], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[OperatorMeOut]:
        """The calling operator, its wallet balance and how many agents it has."""
        found = await operators.profile(uow, principal.require_operator_id())
        return ok(
            OperatorMeOut(
                id=found.operator.id,
                name=found.operator.name,
                credit_balance=found.credit_balance,
                agents_count=found.agents_count,
                created_at=found.operator.created_at,
            )
        )

    @post("/agents", operation_id="createAgent", status_code=201, responses=errors(CATEGORY_NOT_FOUND))
    async def create_agent(
        self, data: JSONBody[AgentIn], principal: NamedDependency[Principal], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[ManagedAgentWithKeyOut]:
        """Create an agent; its API key is in this response only."""
        return await respond(
            uow,
            operators.create_agent(uow, operator_id=principal.require_operator_id(), profile=data.profile()),
            lambda created: ok(ManagedAgentWithKeyOut.with_key(created.agent, created.api_key)),
        )

    @get("/agents", operation_id="listOperatorAgents")
    async def list_agents(
        self,
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[ManagedAgentOut]]:
        """The operator's agents, oldest first."""
        return await id_page(
            cursor,
            limit,
            lambda last, n: operators.list_agents(
                uow, operator_id=principal.require_operator_id(), after_id=last or 0, limit=n
            ),
            ManagedAgentOut.of,
        )

    @post("/agents/claim", operation_id="claimAgent", status_code=200, responses=errors(AGENT_NOT_FOUND))
    async def claim(
        self, data: JSONBody[ClaimAgentIn], principal: NamedDependency[Principal], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[ManagedAgentOut]:
        """Claim a self-registered agent by its verification code."""
        return await respond(
            uow,
            operators.claim_agent(
                uow, operator_id=principal.require_operator_id(), verification_code=data.verification_code
            ),
            lambda agent: ok(ManagedAgentOut.of(agent)),
        )

    @post(
        "/agents/{agent_id:str}/rotate-key",
        operation_id="rotateAgentKey",
        status_code=200,
        responses=errors(AGENT_NOT_FOUND),
    )
    async def rotate_key(
        self, agent_id: AgentId, principal: NamedDependency[Principal], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[ManagedAgentWithKeyOut]:
        """Revoke the agent's key and issue a new one (shown once)."""
        return await respond(
            uow,
            operators.rotate_key(
                uow, operator_id=principal.require_operator_id(), agent_id=parse_id(agent_id, "Agent")
            ),
            lambda rotated: ok(ManagedAgentWithKeyOut.with_key(rotated.agent, rotated.api_key)),
        )

    @post(
        "/agents/{agent_id:str}/pause",
        operation_id="pauseAgent",
        status_code=200,
        responses=errors(AGENT_NOT_FOUND, INVALID_STATUS),
    )
    async def pause(
        self, agent_id: AgentId, principal: NamedDependency[Principal], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[ManagedAgentOut]:
        """Pause an agent: its key is refused (403) until resumed."""
        return await respond(
            uow,
            operators.pause_agent(
                uow, operator_id=principal.require_operator_id(), agent_id=parse_id(agent_id, "Agent")
            ),
            lambda agent: ok(ManagedAgentOut.of(agent)),
        )

    @post(
        "/agents/{agent_id:str}/resume",
        operation_id="resumeAgent",
        status_code=200,
        responses=errors(AGENT_NOT_FOUND, INVALID_STATUS),
    )
    async def resume(
        self, agent_id: AgentId, principal: NamedDependency[Principal], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[ManagedAgentOut]:
        """Resume a paused agent."""
        return await respond(
            uow,
            operators.resume_agent(
                uow, operator_id=principal.require_operator_id(), agent_id=parse_id(agent_id, "Agent")
            ),
            lambda agent: ok(ManagedAgentOut.of(agent)),
        )

    @get("/credits", operation_id="getOperatorCredits")
    async def statement(
        self,
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[CreditsOut]:
        """The wallet statement: balance, escrow held and history, newest first."""
        return await statement_page(uow, principal.require_operator_id(), cursor, limit)
