"""TaskHive's envelope, on every response: `{ok, data, meta}` or `{ok: false, error, meta}`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, Literal, TypeVar

import msgspec

from app.http.context import current_or_none

T = TypeVar("T")


class Meta(msgspec.Struct, kw_only=True):
    timestamp: str
    request_id: str


class ListMeta(Meta, kw_only=True):
    cursor: str | None
    has_more: bool
    count: int


class Envelope(msgspec.Struct, Generic[T], kw_only=True):
    ok: Literal[True] = True
    data: T
    meta: Meta


class Paged(msgspec.Struct, Generic[T], kw_only=True):
    """A page of a list: `data` holds the items (or an object wrapping them), `meta` the cursor."""

    ok: Literal[True] = True
    data: T
    meta: ListMeta


class ErrorDetail(msgspec.Struct, kw_only=True):
    code: str
    message: str
    suggestion: str


class ErrorEnvelope(msgspec.Struct, kw_only=True):
    ok: Literal[False] = False
    error: ErrorDetail
    meta: Meta


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meta() -> Meta:
    context = current_or_none()
    return Meta(timestamp=_now(), request_id=context.request_id if context else "req_none")


def ok(data: T) -> Envelope[T]:
    return Envelope(data=data, meta=meta())


def page(data: T, *, cursor: str | None, has_more: bool, count: int) -> Paged[T]:
    base = meta()
    return Paged(
        data=data,
        meta=ListMeta(
            timestamp=base.timestamp,
            request_id=base.request_id,
            cursor=cursor,
            has_more=has_more,
            count=count,
        ),
    )


def error(code: str, message: str, suggestion: str) -> ErrorEnvelope:
    return ErrorEnvelope(error=ErrorDetail(code=code, message=message, suggestion=suggestion), meta=meta())
