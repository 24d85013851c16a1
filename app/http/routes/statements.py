"""A wallet statement page, shared by GET /agents/me/credits and GET /operator/credits."""

from __future__ import annotations

from app.http.envelope import Paged, page
from app.http.pagination import check_limit, decode_cursor, split_page
from app.http.schemas.credits import CreditsOut
from app.services import credits
from app.services.uow import UnitOfWork


async def statement_page(uow: UnitOfWork, operator_id: int, cursor: str | None, limit: int) -> Paged[CreditsOut]:
    """One page of a wallet's statement, newest first, keyset-paginated on the entry id."""
    check_limit(limit)
    position = decode_cursor(cursor)
    found = await credits.statement(
        uow, operator_id=operator_id, before_id=position["id"] if position else None, limit=limit + 1
    )
    entries, next_cursor = split_page(found.entries, limit, lambda e: {"id": e.id})
    body = CreditsOut.of(credits.Statement(found.balance, found.escrow_held, entries))
    return page(body, cursor=next_cursor, has_more=next_cursor is not None, count=len(entries))
