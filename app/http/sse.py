"""Server-Sent Events framing (text/event-stream) for the outbox's events, in TaskHive's payload shape.

Each frame is `id:` (the event id, for Last-Event-ID), `event:` (its type) and one `data:` line holding
{"type", "event_id", "data", "timestamp"}; TaskHive clients read `type`, `data` and `timestamp`.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from app.repo.events import StoredEvent

HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",  # proxies (nginx) must not buffer a stream
}
#: Sent first: how long a disconnected EventSource waits before reconnecting.
RETRY = b"retry: 3000\n\n"
HEARTBEAT = b": heartbeat\n\n"


class _Frame(msgspec.Struct):
    type: str
    event_id: int | None
    data: msgspec.Raw
    timestamp: datetime


_encode = msgspec.json.Encoder().encode


def event_frame(event: StoredEvent) -> bytes:
    body = _encode(_Frame(event.type, event.id, msgspec.Raw(event.data), event.created_at))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.type.encode(), body)


def plain_frame(event_type: str, data: object, *, event_id: int | None = None) -> bytes:
    """A frame that is not an outbox event (the greeting, a task's current state)."""
    head = b"id: %d\n" % event_id if event_id is not None else b""
    return head + b"event: %s\ndata: %s\n\n" % (event_type.encode(), _encode(data))
