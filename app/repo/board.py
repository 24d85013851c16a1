"""The board's reads: every column's count and newest tasks in one statement, and one column's next page.

Whose board it is comes from the statement's `viewer` (app.repo.connections.VIEWER_AGENT), so the read can go
out with the caller's authentication. No visibility predicate is needed: a board lists only tasks its reader's
operator posted, or that its reader bid on or works on, which a directed task allows only to its eligible agents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from psycopg.rows import TupleRow

from app.repo.connections import VIEWER_AGENT, VIEWER_OPERATOR, Query
from app.repo.rows import Column, row_type
from app.repo.task_clock import SHOWN_STATUS
from domain.board import BoardColumn, BoardItem, ColumnPage, Source
from domain.tasks import Priority, TaskStatus

BOARD_ITEM = row_type(
    BoardItem,
    id="t.id",
    title="t.title",
    status=Column(SHOWN_STATUS, TaskStatus),
    budget_credits="t.budget_credits",
    price_credits="t.price_credits",
    priority=Column("t.priority", Priority),
    tags=Column("t.tags", tuple),
    deadline="t.deadline",
    expires_at="t.expires_at",
    created_at="t.created_at",
    updated_at="t.updated_at",
)

# Each source's rows (`t` the task) and the condition that makes them the reader's.
_SOURCES = {
    Source.POSTED: ("task t", f"t.poster_operator_id = {VIEWER_OPERATOR}"),
    Source.ASSIGNED: ("task t", f"t.claimed_by_agent_id = {VIEWER_AGENT}"),
    # At most one pending bid per agent and task (uq_claim_pending_per_agent): each task once.
    Source.PENDING_BID: (
        "claim b JOIN task t ON t.id = b.task_id",
        f"b.agent_id = {VIEWER_AGENT} AND b.status = 'pending'",
    ),
}


def _rows(column: BoardColumn) -> tuple[str, str]:
    """The column's FROM and WHERE. Its statuses are written into the statement (TaskStatus values, a closed set
    of plain words), as app.repo.tasks does: the plan knows them. A task is in the column of the status readers
    are told (an open task past its expiry is expired before its expiry is written: app.repo.task_clock)."""
    source, mine = _SOURCES[column.source]
    statuses = ", ".join(f"'{TaskStatus(status).value}'" for status in column.statuses)
    return source, f"{mine} AND ({SHOWN_STATUS}) IN ({statuses})"


def _board_reader(columns: Sequence[BoardColumn]) -> Callable[[Sequence[TupleRow]], list[ColumnPage]]:
    def read(rows: Sequence[TupleRow]) -> list[ColumnPage]:
        counts = [0] * len(columns)
        items: list[list[BoardItem]] = [[] for _ in columns]
        for row in rows:
            at = row[0]
            counts[at] = row[1]
            if row[2] is not None:  # an empty column's one row has no task
                items[at].append(BOARD_ITEM.read(row, 2))
        return [ColumnPage(column=c, count=counts[n], items=items[n]) for n, c in enumerate(columns)]

    return read


def board(columns: Sequence[BoardColumn], limit: int) -> Query[list[ColumnPage]]:
    """Every column's count and its `limit` newest tasks (by id: exact, and the column's cursor), in one
    statement: one part per column, each counting its rows and reading its first page, so the counts and the
    pages agree (one snapshot)."""

    def statement(gate: str) -> str:
        parts = []
        for n, column in enumerate(columns):
            source, where = _rows(column)
            # The count's row is always there (an aggregate), so the page carries the gate too.
            parts.append(
                f"""(SELECT {n} AS board_column, counted.total, page.*
                       FROM (SELECT count(*) AS total FROM {source} WHERE {gate} AND {where}) counted
                       LEFT JOIN LATERAL (SELECT {BOARD_ITEM.columns} FROM {source} WHERE {gate} AND {where}
                                           ORDER BY t.id DESC LIMIT {int(limit)}) page ON true)"""
            )
        return " UNION ALL ".join(parts) + ' ORDER BY board_column, "id" DESC'

    return Query(statement, {}, _board_reader(columns), viewed=True)


def column_page(column: BoardColumn, *, before_id: int | None, limit: int) -> Query[list[BoardItem]]:
    """The column's tasks older than `before_id` (all when None), newest first."""
    source, where = _rows(column)
    params: dict[str, object] = {}
    if before_id is not None:
        where += " AND t.id < %(before)s"
        params["before"] = before_id
    return Query(
        lambda gate: (
            f"SELECT {BOARD_ITEM.columns} FROM {source} WHERE {gate} AND {where} ORDER BY t.id DESC LIMIT {int(limit)}"
        ),
        params,
        BOARD_ITEM.read_all,
        viewed=True,
    )
