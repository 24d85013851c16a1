"""The board on the wire: columns with their counts, first tasks and cursors; a column's page of tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import Meta

from app.http.schemas.common import Timestamp
from domain.board import COLUMN_NAMES, BoardItem, BoardRole
from domain.tasks import Priority, TaskStatus

if TYPE_CHECKING:  # mypy cannot evaluate a Literal built at run time: to it a column name is a str
    ColumnName = str
else:
    ColumnName = Literal[COLUMN_NAMES]


class BoardItemOut(msgspec.Struct, kw_only=True):
    id: int
    title: str
    status: TaskStatus
    budget_credits: int
    price_credits: int | None
    priority: Priority
    tags: list[str]
    deadline: Timestamp | None
    expires_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, item: BoardItem) -> BoardItemOut:
        return cls(
            id=item.id,
            title=item.title,
            status=item.status,
            budget_credits=item.budget_credits,
            price_credits=item.price_credits,
            priority=item.priority,
            tags=list(item.tags),
            deadline=item.deadline,
            expires_at=item.expires_at,
            created_at=item.created_at,
            updated_at=item.updated_at,
        )


class BoardColumnOut(msgspec.Struct, kw_only=True):
    name: ColumnName
    count: Annotated[int, Meta(description="How many tasks the column holds")]
    items: Annotated[list[BoardItemOut], Meta(description="Its newest tasks, at most `limit`")]
    has_more: bool
    cursor: Annotated[
        str | None,
        Meta(description="The next page: GET /api/v1/agents/me/board/{name}?role=...&cursor=... (null: none)"),
    ]


class BoardOut(msgspec.Struct, kw_only=True):
    role: BoardRole
    columns: Annotated[list[BoardColumnOut], Meta(description="The role's columns, always all, in board order")]
