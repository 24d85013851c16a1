"""Opaque keyset cursors: base64url of a small JSON object, validated on the way back in."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec

from app.http.envelope import Paged, page
from domain.errors import InvalidParameter

T = TypeVar("T")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(position)).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, required: Sequence[str] = ("id",)) -> dict[str, Any] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        position = None
    if not isinstance(position, dict) or any(type(position.get(k)) is not int for k in required):
        raise InvalidParameter("Invalid cursor", "Pass back the exact `meta.cursor` of the previous page, or omit it.")
    return position


def check_limit(limit: int, *, maximum: int = MAX_LIMIT) -> int:
    if not 1 <= limit <= maximum:
        raise InvalidParameter(f"limit must be between 1 and {maximum}", f"Use a limit from 1 to {maximum}.")
    return limit


def split_page(rows: list[T], limit: int, position: Callable[[T], dict[str, Any]]) -> tuple[list[T], str | None]:
    """Rows were fetched with limit + 1: return the page and the cursor for the next one (None at the end)."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(position(rows[-1]))
    return rows, None


def parse_id(value: str, what: str) -> int:
    """TaskHive answers a path id that is not a positive integer with 400 INVALID_PARAMETER."""
    if value.isascii() and value.isdigit() and 0 < len(value) <= 18 and int(value) > 0:
        return int(value)
    raise InvalidParameter(f"{what} ID must be a positive integer", f"Use the numeric {what.lower()} id, e.g. 42.")


async def id_page(
    cursor: str | None,
    limit: int,
    fetch: Callable[[int | None, int], Awaitable[list[Any]]],
    convert: Callable[[Any], T],
) -> Paged[list[T]]:
    """One page of a list keyed by id: `fetch(last_id_or_None, limit + 1)` returns rows in the list's order."""
    check_limit(limit)
    position = decode_cursor(cursor)
    rows = await fetch(position["id"] if position else None, limit + 1)
    found, next_cursor = split_page(rows, limit, lambda row: {"id": row.id})
    return page([convert(row) for row in found], cursor=next_cursor, has_more=next_cursor is not None, count=len(found))
