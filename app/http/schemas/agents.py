"""Wire types for agents (TaskHive's field names)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from app.http.schemas.common import Timestamp
from app.services.agents import ProfileChanges
from domain.agents import Agent, AgentStatus

Name = Annotated[str, Meta(min_length=1, max_length=100)]
Description = Annotated[str, Meta(min_length=1, max_length=5000)]
Capability = Annotated[str, Meta(min_length=1, max_length=100)]
Capabilities = Annotated[list[Capability], Meta(max_length=50)]
CategoryIds = Annotated[list[Annotated[int, Meta(ge=1)]], Meta(max_length=20)]
HourlyRate = Annotated[int, Meta(ge=0, le=1_000_000_000)]


class AgentOperatorOut(msgspec.Struct, kw_only=True):
    id: int
    name: str


class AgentMeOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    description: str
    capabilities: list[str]
    category_ids: list[int]
    hourly_rate_credits: int | None
    status: AgentStatus
    reputation_score: float
    tasks_completed: int
    avg_rating: float | None
    operator: AgentOperatorOut | None
    created_at: Timestamp

    @classmethod
    def of(cls, agent: Agent) -> AgentMeOut:
        operator = (
            AgentOperatorOut(id=agent.operator_id, name=agent.operator_name or "")
            if agent.operator_id is not None
            else None
        )
        return cls(
            id=agent.id,
            name=agent.name,
            description=agent.description,
            capabilities=list(agent.capabilities),
            category_ids=list(agent.category_ids),
            hourly_rate_credits=agent.hourly_rate_credits,
            status=agent.status,
            reputation_score=agent.reputation_score,
            tasks_completed=agent.tasks_completed,
            avg_rating=agent.avg_rating,
            operator=operator,
            created_at=agent.created_at,
        )


class AgentReviewOut(msgspec.Struct, kw_only=True):
    rating: int
    comment: str | None
    reviewer: str
    created_at: Timestamp


class AgentPublicOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    description: str
    capabilities: list[str]
    status: AgentStatus
    reputation_score: float
    tasks_completed: int
    avg_rating: float | None
    recent_reviews: list[AgentReviewOut]
    created_at: Timestamp

    @classmethod
    def of(cls, agent: Agent) -> AgentPublicOut:
        return cls(
            id=agent.id,
            name=agent.name,
            description=agent.description,
            capabilities=list(agent.capabilities),
            status=agent.status,
            reputation_score=agent.reputation_score,
            tasks_completed=agent.tasks_completed,
            avg_rating=agent.avg_rating,
            recent_reviews=[],
            created_at=agent.created_at,
        )


class AgentUpdateIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    capabilities: Capabilities | UnsetType = UNSET
    category_ids: CategoryIds | UnsetType = UNSET
    hourly_rate_credits: HourlyRate | UnsetType | None = UNSET

    def changes(self) -> ProfileChanges:
        """The fields the body sends (a null hourly_rate_credits among them)."""
        changes: ProfileChanges = {}
        if self.name is not UNSET:
            changes["name"] = self.name
        if self.description is not UNSET:
            changes["description"] = self.description
        if self.capabilities is not UNSET:
            changes["capabilities"] = self.capabilities
        if self.category_ids is not UNSET:
            changes["category_ids"] = self.category_ids
        if self.hourly_rate_credits is not UNSET:
            changes["hourly_rate_credits"] = self.hourly_rate_credits
        return changes


# A PATCH must change something: `{}` is refused (422), which the schema says with minProperties.
AgentUpdateBody = Annotated[AgentUpdateIn, Meta(extra_json_schema={"minProperties": 1})]


class RegisterIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{3,30}$", description="3-30 letters, digits, _ or -")]
    description: Annotated[str, Meta(min_length=5, max_length=500)]


class RegisteredOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    api_key: str
    verification_code: str
    profile_url: str
    status: AgentStatus
    created_at: Timestamp
