"""Keyset cursors: signed, and bound to the list they came from.

A cursor is `<payload>.<tag>`, both base64url: the payload is the last row's position plus a short digest of the
list (who asked, the route, its path and query parameters but `cursor` and `limit`), the tag an HMAC-SHA256 of the
payload under a key derived from the data key (AGORA_SECRET_KEY). So a cursor from another list, from the same
list with other filters, or with edited bytes is refused with a 400 instead of being parsed: a hand-made position
never reaches a query, and a client that changed its filters mid-way is told to start again.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import msgspec
from litestar import Request

from app.crypto import KeyRing
from app.http import context
from app.http.envelope import Paged, page
from domain.errors import InvalidParameter

T = TypeVar("T")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_TAG_BYTES = 16  # 128 bits: a forgery takes 2^128 tries
_LIST_FIELD = "l"  # the payload field that holds the list's digest
_PAGE_PARAMETERS = frozenset({"cursor", "limit"})  # the same list, whatever page and page size


def list_digest(
    principal: str, path_template: str, path_params: dict[str, Any], query: Iterable[tuple[str, str]]
) -> str:
    """Which list a cursor belongs to: who asked, the route, its path parameters and its query but the page's own."""
    kept = sorted((name, value) for name, value in query if name not in _PAGE_PARAMETERS)
    identity = msgspec.json.encode(
        [principal, path_template, sorted((n, str(v)) for n, v in path_params.items()), kept]
    )
    return base64.urlsafe_b64encode(hashlib.sha256(identity).digest()[:9]).decode()


def bind_list(request: Request[Any, Any, Any]) -> None:
    """before_request: record which list this request reads, for the cursors it mints and accepts. The digest is
    computed when a cursor first needs it (most requests read or mint none); whose list it is is settled now."""
    ctx = context.current()
    if ctx.deferred_auth is not None:  # not yet known whose key it is: the list is bound to the key
        principal = ctx.deferred_auth.asker
    else:
        principal = ctx.principal.name if ctx.principal else "anonymous"
    ctx.list_owner = principal
    template = request.scope.get("path_template") or ""
    ctx.list_digest = functools.cache(
        lambda: list_digest(principal, template, request.path_params, request.query_params.multi_items())
    )
    ctx.keyring = request.app.state.keyring


@functools.lru_cache(maxsize=4)
def _cursor_key(keyring: KeyRing) -> bytes:
    """Derived when a list first mints or reads a cursor: a request that touches none needs no data key."""
    return keyring.derive("cursor")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_TAG_BYTES]


def mint_cursor(keyring: KeyRing, digest: str, position: dict[str, Any]) -> str:
    """The cursor for `position` in the list `digest` names (see list_digest), signed under `keyring`."""
    payload = msgspec.json.encode({**position, _LIST_FIELD: digest})
    return f"{_b64(payload)}.{_b64(_tag(_cursor_key(keyring), payload))}"


def _request_keyring(ctx: context.RequestContext) -> KeyRing:
    if ctx.keyring is None:
        raise RuntimeError("no key ring for this request's cursors: bind_list runs before every route")
    return ctx.keyring


def _request_list(ctx: context.RequestContext) -> str:
    if ctx.list_digest is None:
        raise RuntimeError("no list for this request's cursors: bind_list runs before every route")
    return ctx.list_digest()


def encode_cursor(position: dict[str, Any]) -> str:
    ctx = context.current()
    return mint_cursor(_request_keyring(ctx), _request_list(ctx), position)


def encode_cursor_for(
    path_template: str, path_params: dict[str, Any], query: Iterable[tuple[str, str]], position: dict[str, Any]
) -> str:
    """A cursor into another list of this caller's than the one this request reads, as that list's own route
    will check it (a board column's next page, minted by the board): `query` is the route's, but cursor and limit."""
    ctx = context.current()
    if ctx.list_owner is None:
        raise RuntimeError("no owner for this request's lists: bind_list runs before every route")
    return mint_cursor(_request_keyring(ctx), list_digest(ctx.list_owner, path_template, path_params, query), position)


def _restart(message: str) -> InvalidParameter:
    return InvalidParameter(message, "Start again from the first page: send the request without `cursor`.")


def decode_cursor(cursor: str | None, *, required: Sequence[str] = ("id",)) -> dict[str, Any] | None:
    if cursor is None:
        return None
    ctx = context.current()
    encoded_payload, _, encoded_tag = cursor.partition(".")
    try:
        payload, tag = _unb64(encoded_payload), _unb64(encoded_tag)
    except (binascii.Error, ValueError):
        payload, tag = b"", b""
    # The canonical spelling only: base64 lets the last character's spare bits vary without changing the bytes.
    canonical = f"{_b64(payload)}.{_b64(tag)}" == cursor
    if not hmac.compare_digest(tag, _tag(_cursor_key(_request_keyring(ctx)), payload)) or not canonical:
        raise _restart("Invalid cursor: it was not issued by this server, or it was altered")
    position: dict[str, Any] = msgspec.json.decode(payload)  # signed by this server: always an object
    if position.pop(_LIST_FIELD, None) != _request_list(ctx):
        raise _restart("This cursor belongs to another list, or to this list with other filters")
    if any(type(position.get(k)) is not int for k in required):
        raise _restart("Invalid cursor for this list")
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
