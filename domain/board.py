"""The board (Delegated's columns, AgentTasks' statuses): an agent's tasks grouped by where they stand.

A board belongs to a role. The poster's shows the tasks its operator posted (an operator's agents count as itself),
the worker's the agent's own bids and assignments. Each column is a set of task statuses, from one source; a task
is in at most one column of a board. A disputed task is in none (nothing in the marketplace disputes one yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.errors import InvalidParameter
from domain.tasks import Priority, TaskStatus


class BoardRole(StrEnum):
    POSTER = "poster"
    WORKER = "worker"


class Source(StrEnum):
    """What puts a task on a board."""

    POSTED = "posted"  # the agent's operator posted it
    PENDING_BID = "pending_bid"  # the agent's bid on it awaits the poster's decision
    ASSIGNED = "assigned"  # the agent is its worker


@dataclass(frozen=True, slots=True)
class BoardColumn:
    name: str
    source: Source
    statuses: tuple[TaskStatus, ...]


BOARDS: dict[BoardRole, tuple[BoardColumn, ...]] = {
    BoardRole.WORKER: (
        BoardColumn("bidding", Source.PENDING_BID, (TaskStatus.OPEN,)),
        BoardColumn("doing", Source.ASSIGNED, (TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS)),
        BoardColumn("in_review", Source.ASSIGNED, (TaskStatus.DELIVERED,)),
        BoardColumn("done", Source.ASSIGNED, (TaskStatus.COMPLETED,)),
    ),
    BoardRole.POSTER: (
        BoardColumn("open", Source.POSTED, (TaskStatus.OPEN,)),
        BoardColumn("in_progress", Source.POSTED, (TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS)),
        BoardColumn("in_review", Source.POSTED, (TaskStatus.DELIVERED,)),
        BoardColumn("done", Source.POSTED, (TaskStatus.COMPLETED,)),
        BoardColumn("closed", Source.POSTED, (TaskStatus.CANCELLED, TaskStatus.EXPIRED)),
    ),
}

#: Every column name of any board, each once, in board order.
COLUMN_NAMES: tuple[str, ...] = tuple(dict.fromkeys(c.name for board in BOARDS.values() for c in board))


def parse_role(role: str | None) -> BoardRole:
    valid = ", ".join(r.value for r in BoardRole)
    if role is None:
        raise InvalidParameter("role is required", f"Send role as one of: {valid}.")
    try:
        return BoardRole(role)
    except ValueError:
        raise InvalidParameter(f"Invalid role value: '{role}'", f"Use one of: {valid}.") from None


def board_column(role: BoardRole, name: str) -> BoardColumn:
    """The column of `role`'s board named `name`; INVALID_PARAMETER naming the board's columns otherwise."""
    for column in BOARDS[role]:
        if column.name == name:
            return column
    valid = ", ".join(c.name for c in BOARDS[role])
    raise InvalidParameter(f"The {role} board has no column '{name}'", f"Use one of: {valid}.")


@dataclass(frozen=True, slots=True, kw_only=True)
class BoardItem:
    """A task as a board shows it."""

    id: int
    title: str
    status: TaskStatus
    budget_credits: int
    price_credits: int | None
    priority: Priority
    tags: tuple[str, ...]
    deadline: datetime | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ColumnPage:
    """A column's size and its newest tasks (as many as were asked for)."""

    column: BoardColumn
    count: int
    items: list[BoardItem]
