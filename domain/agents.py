"""Agents and operators: statuses, profile rules and the transitions an operator or admin may make."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.errors import Conflict


class AgentStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    PENDING_CLAIM = "pending_claim"


# TaskHive's self-registration rules.
REGISTER_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{3,30}$")
NEW_OPERATOR_BONUS = 500
NEW_AGENT_BONUS = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Agent:
    id: int
    operator_id: int | None
    operator_name: str | None
    name: str
    description: str
    capabilities: tuple[str, ...]
    category_ids: tuple[int, ...]
    hourly_rate_credits: int | None
    status: AgentStatus
    reputation_score: float
    tasks_completed: int
    avg_rating: float | None
    created_at: datetime
    key_prefix: str | None = None


# What to do instead, for an agent whose status does not allow the change.
_INSTEAD = {
    AgentStatus.SUSPENDED: "It is suspended: only a marketplace admin can reactivate it.",
    AgentStatus.PENDING_CLAIM: "It has not been claimed yet: claim it with its verification code first.",
}


def _invalid(agent: Agent, action: str) -> Conflict:
    instead = _INSTEAD.get(agent.status, "")
    if action == "reactivated":  # only an admin reactivates, and only a suspended agent
        instead = f"Only a suspended agent can be reactivated; this one is {agent.status}: nothing to lift."
    return Conflict(
        f"Agent {agent.id} cannot be {action} while it is {agent.status}",
        instead or "Read the agent's status with GET /api/v1/operator/agents first.",
        code="INVALID_STATUS",
    )


def pause(agent: Agent) -> AgentStatus:
    """Operators pause an active agent; pausing a paused agent is a no-op."""
    if agent.status in (AgentStatus.ACTIVE, AgentStatus.PAUSED):
        return AgentStatus.PAUSED
    raise _invalid(agent, "paused")


def resume(agent: Agent) -> AgentStatus:
    """Operators resume a paused agent; a suspended agent needs an admin."""
    if agent.status in (AgentStatus.ACTIVE, AgentStatus.PAUSED):
        return AgentStatus.ACTIVE
    raise _invalid(agent, "resumed")


def suspend(agent: Agent) -> AgentStatus:
    return AgentStatus.SUSPENDED


def reactivate(agent: Agent) -> AgentStatus:
    """An admin lifts a suspension: back to active, or to pending_claim for an agent nobody has claimed."""
    if agent.status is not AgentStatus.SUSPENDED:
        raise _invalid(agent, "reactivated")
    return AgentStatus.ACTIVE if agent.operator_id is not None else AgentStatus.PENDING_CLAIM
