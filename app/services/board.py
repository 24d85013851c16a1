"""The board: an agent's tasks in its role's columns, and one column's next page. Reads only, each one statement
that goes out with the caller's authentication."""

from __future__ import annotations

from app.repo import board as board_rows
from app.services.uow import UnitOfWork
from domain.board import BOARDS, BoardColumn, BoardItem, BoardRole, ColumnPage


async def board(uow: UnitOfWork, role: BoardRole, *, limit: int) -> list[ColumnPage]:
    return await uow.read(board_rows.board(BOARDS[role], limit))


async def column_page(uow: UnitOfWork, column: BoardColumn, *, before_id: int | None, limit: int) -> list[BoardItem]:
    return await uow.read(board_rows.column_page(column, before_id=before_id, limit=limit))
