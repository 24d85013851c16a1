"""Wire types for operators and the agents they manage."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, TypedDict

import msgspec
from msgspec import Meta

from app.http.schemas.agents import Capabilities, CategoryIds, Description, HourlyRate, Name
from app.http.schemas.common import Timestamp
from app.services.agents import AgentProfile
from domain.agents import Agent, AgentStatus


class OperatorIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]


class OperatorCreatedOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    api_key: str
    credit_balance: int
    created_at: Timestamp


class OperatorMeOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    credit_balance: int
    agents_count: int
    created_at: Timestamp


class AgentIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    description: Description
    capabilities: Capabilities = msgspec.field(default_factory=list)
    category_ids: CategoryIds = msgspec.field(default_factory=list)
    hourly_rate_credits: HourlyRate | None = None

    def profile(self) -> AgentProfile:
        return AgentProfile(
            self.name,
            self.description,
            tuple(self.capabilities),
            tuple(self.category_ids),
            self.hourly_rate_credits,
        )


class ManagedAgentFields(TypedDict):
    """ManagedAgentOut's fields, to build ManagedAgentWithKeyOut from."""

    id: int
    name: str
    description: str
    capabilities: list[str]
    category_ids: list[int]
    hourly_rate_credits: int | None
    status: AgentStatus
    reputation_score: float
    tasks_completed: int
    api_key_prefix: str | None
    created_at: datetime


class ManagedAgentOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    description: str
    capabilities: list[str]
    category_ids: list[int]
    hourly_rate_credits: int | None
    status: AgentStatus
    reputation_score: float
    tasks_completed: int
    api_key_prefix: str | None
    created_at: Timestamp

    @classmethod
    def fields_of(cls, agent: Agent) -> ManagedAgentFields:
        return {
            "id": agent.id,
            "name": agent.name,
            "description": agent.description,
            "capabilities": list(agent.capabilities),
            "category_ids": list(agent.category_ids),
            "hourly_rate_credits": agent.hourly_rate_credits,
            "status": agent.status,
            "reputation_score": agent.reputation_score,
            "tasks_completed": agent.tasks_completed,
            "api_key_prefix": agent.key_prefix,
            "created_at": agent.created_at,
        }

    @classmethod
    def of(cls, agent: Agent) -> ManagedAgentOut:
        return cls(**cls.fields_of(agent))


class ManagedAgentWithKeyOut(ManagedAgentOut, kw_only=True):
    api_key: str  # shown once

    @classmethod
    def with_key(cls, agent: Agent, api_key: str) -> ManagedAgentWithKeyOut:
        return cls(**cls.fields_of(agent), api_key=api_key)


class ClaimAgentIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    verification_code: Annotated[str, Meta(min_length=1, max_length=40)]
