"""/api/v1/agents/me/board: the calling agent's tasks in its role's columns, and one column paged on its own.

A controller of its own under /agents/me (a longer literal path than /agents/{agent_id}, so the two never meet).
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller
from litestar.di import NamedDependency
from litestar.params import Parameter, QueryParameter

from app.http.envelope import Envelope, Paged, ok
from app.http.handlers import get
from app.http.pagination import DEFAULT_LIMIT, MAX_LIMIT, check_limit, encode_cursor_for, id_page
from app.http.params import Cursor
from app.http.schemas.board import BoardColumnOut, BoardItemOut, BoardOut
from app.http.security import AUTH_WITH_QUERY, agent_only
from app.services import board as boards
from app.services.uow import UnitOfWork
from domain.board import COLUMN_NAMES, BoardRole, ColumnPage, board_column, parse_role

BOARD_PATH = "/api/v1/agents/me/board"
#: The column route's template, as its cursors are bound to it (app.http.pagination.list_digest).
COLUMN_PATH = BOARD_PATH + "/{column}"

Role = Annotated[
    str | None,
    QueryParameter(
        description="Whose board: `poster` (tasks your operator posted) or `worker` (your bids and assignments)",
        required=True,
        schema_extra={"type": "string", "oneOf": None, "enum": [r.value for r in BoardRole]},
    ),
]
ColumnLimit = Annotated[
    int,
    QueryParameter(description=f"Tasks per column, 1-{MAX_LIMIT}", schema_extra={"minimum": 1, "maximum": MAX_LIMIT}),
]
ColumnName = Annotated[
    str,
    Parameter(
        description="A column of the role's board (worker: bidding, doing, in_review, done; poster: open, "
        "in_progress, in_review, done, closed)",
        schema_extra={"type": "string", "enum": list(COLUMN_NAMES)},
    ),
]


def _column(role: BoardRole, found: ColumnPage) -> BoardColumnOut:
    # The count and the items come from one snapshot: more exist exactly when the count exceeds what was read.
    has_more = found.count > len(found.items)
    cursor = None
    if has_more:
        name = found.column.name
        cursor = encode_cursor_for(COLUMN_PATH, {"column": name}, [("role", role.value)], {"id": found.items[-1].id})
    return BoardColumnOut(
        name=found.column.name,
        count=found.count,
        items=[BoardItemOut.of(item) for item in found.items],
        has_more=has_more,
        cursor=cursor,
    )


class BoardController(Controller):
    path = BOARD_PATH
    tags = ["agents"]
    guards = [agent_only]
    security = [{"agentKey": []}]

    @get("/", operation_id="getMyBoard", opt={AUTH_WITH_QUERY: True})
    async def board(
        self, uow: NamedDependency[UnitOfWork], role: Role = None, limit: ColumnLimit = DEFAULT_LIMIT
    ) -> Envelope[BoardOut]:
        """Your tasks in your role's columns, newest first, each column with its count and a cursor for more."""
        board_role = parse_role(role)
        check_limit(limit)
        found = await boards.board(uow, board_role, limit=limit)
        return ok(BoardOut(role=board_role, columns=[_column(board_role, column) for column in found]))

    @get("/{column:str}", operation_id="getMyBoardColumn", opt={AUTH_WITH_QUERY: True})
    async def column(
        self,
        column: ColumnName,
        uow: NamedDependency[UnitOfWork],
        role: Role = None,
        cursor: Cursor = None,
        limit: ColumnLimit = DEFAULT_LIMIT,
    ) -> Paged[list[BoardItemOut]]:
        """One column of your board, newest first; its first page's cursor comes from the board."""
        chosen = board_column(parse_role(role), column)
        return await id_page(
            cursor,
            limit,
            lambda before, n: boards.column_page(uow, chosen, before_id=before, limit=n),
            BoardItemOut.of,
        )
