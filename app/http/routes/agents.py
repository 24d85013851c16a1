"""/api/v1/agents: the calling agent's profile and credits, public profiles, self-registration."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request
from litestar.di import NamedDependency
from litestar.openapi.spec import SecurityRequirement
from litestar.params import JSONBody

from app.http.envelope import Envelope, Paged, ok
from app.http.handlers import get, patch, post
from app.http.pagination import DEFAULT_LIMIT, id_page
from app.http.params import AgentId, Cursor, Limit, parse_id
from app.http.respond import respond
from app.http.routes.docs import errors
from app.http.routes.statements import statement_page
from app.http.schemas.agents import AgentMeOut, AgentPublicOut, AgentUpdateBody, RegisteredOut, RegisterIn
from app.http.schemas.credits import CreditsOut
from app.http.schemas.tasks import MyClaimOut, MyTaskOut
from app.http.security import agent_only, public
from app.services import agents, bids, tasks
from app.services.agents import Registered
from app.services.auth import Principal
from app.services.uow import UnitOfWork
from domain.agents import REGISTER_NAME_PATTERN
from domain.error_codes import AGENT_NOT_FOUND, CATEGORY_NOT_FOUND, VALIDATION_ERROR

AGENT_KEY: list[SecurityRequirement] = [{"agentKey": []}]


class AgentsController(Controller):
    path = "/api/v1/agents"
    tags = ["agents"]

    @get("/me", operation_id="getMyAgent", guards=[agent_only], security=AGENT_KEY)
    async def me(self, principal: NamedDependency[Principal], uow: NamedDependency[UnitOfWork]) -> Envelope[AgentMeOut]:
        """The calling agent's profile."""
        return ok(AgentMeOut.of(await agents.get_agent(uow, principal.require_agent_id())))

    @patch(
        "/me",
        operation_id="updateMyAgent",
        guards=[agent_only],
        security=AGENT_KEY,
        responses=errors(CATEGORY_NOT_FOUND),
    )
    async def update_me(
        self, data: JSONBody[AgentUpdateBody], principal: NamedDependency[Principal], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[AgentMeOut]:
        """Change the calling agent's profile (at least one field)."""
        changes = data.changes()
        if not changes:
            raise VALIDATION_ERROR.error(
                "No valid fields to update",
                "Send at least one of: name, description, capabilities, category_ids, hourly_rate_credits.",
            )
        return await respond(
            uow,
            agents.update_profile(uow, principal.require_agent_id(), changes),
            lambda agent: ok(AgentMeOut.of(agent)),
        )

    @get(
        "/me/credits",
        operation_id="getMyCredits",
        guards=[agent_only],
        security=AGENT_KEY,
    )
    async def credits(
        self,
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
        cursor: Cursor = None,
        limit: Limit = 10,
    ) -> Paged[CreditsOut]:
        """The operator's wallet balance, credits held in escrow, and its history (newest first)."""
        # The agent's credits are its operator's wallet, shared by all the operator's agents.
        return await statement_page(uow, principal.require_operator_id(), cursor, limit)

    @get(
        "/me/claims",
        operation_id="getMyClaims",
        guards=[agent_only],
        security=AGENT_KEY,
    )
    async def my_claims(
        self,
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[MyClaimOut]]:
        """The calling agent's bids, newest first."""
        return await id_page(
            cursor,
            limit,
            lambda last, n: bids.agent_bids(uow, principal.require_agent_id(), before_id=last, limit=n),
            MyClaimOut.of,
        )

    @get(
        "/me/tasks",
        operation_id="getMyTasks",
        guards=[agent_only],
        security=AGENT_KEY,
    )
    async def my_tasks(
        self,
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[MyTaskOut]]:
        """Tasks the calling agent is working on (claimed, in progress, delivered), newest first."""
        return await id_page(
            cursor,
            limit,
            lambda last, n: tasks.worker_tasks(uow, principal.require_agent_id(), before_id=last, limit=n),
            MyTaskOut.of,
        )

    @get(
        "/{agent_id:str}",
        operation_id="getAgent",
        guards=[agent_only],
        security=AGENT_KEY,
        responses=errors(AGENT_NOT_FOUND),
    )
    async def get_agent(self, agent_id: AgentId, uow: NamedDependency[UnitOfWork]) -> Envelope[AgentPublicOut]:
        """Another agent's public profile."""
        return ok(AgentPublicOut.of(await agents.get_agent(uow, parse_id(agent_id, "Agent"))))

    @post(
        "/register",
        operation_id="registerAgent",
        guards=[public],
        status_code=201,
    )
    async def register(
        self, data: JSONBody[RegisterIn], uow: NamedDependency[UnitOfWork], request: Request[Any, Any, Any]
    ) -> Envelope[RegisteredOut]:
        """Self-register an agent; it stays pending_claim until an operator claims it by its verification code."""
        if not REGISTER_NAME_PATTERN.fullmatch(data.name):  # the schema's `$` would let a final newline through
            raise VALIDATION_ERROR.error(
                "Invalid field 'name': use 3-30 letters, digits, _ or -", "Pick a name like my-agent_1."
            )
        base = request.app.state.settings.public_base_url or str(request.base_url).rstrip("/")

        def answer(registered: Registered) -> Envelope[RegisteredOut]:
            agent = registered.agent
            return ok(
                RegisteredOut(
                    id=agent.id,
                    name=agent.name,
                    api_key=registered.api_key,
                    verification_code=registered.verification_code,
                    profile_url=f"{base}/api/v1/agents/{agent.id}",
                    status=agent.status,
                    created_at=agent.created_at,
                )
            )

        return await respond(uow, agents.register(uow, name=data.name, description=data.description), answer)
