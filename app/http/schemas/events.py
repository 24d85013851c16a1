"""Wire type of one Server-Sent Event, as the OpenAPI document describes each event of a stream.

Before OpenAPI 3.2, the schema of a `text/event-stream` response describes one event, parsed into its fields
(`event`, `data`, `id`, `retry`), as schemathesis and other tools read it; `data` is a JSON object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from domain.events import EventType

#: "connected" greets a new stream; every other event is one of the outbox's types.
GREETING = "connected"
# webhook.ping goes only to the webhook being tested, never to a stream.
if TYPE_CHECKING:  # mypy cannot evaluate a Literal built at run time: to it an event name is a str
    StreamEventName = str
else:
    StreamEventName = Literal[GREETING, *(t.value for t in EventType if t is not EventType.WEBHOOK_PING)]
JsonText = Annotated[
    str,
    Meta(
        description="One JSON object: the event's `{type, event_id, data, timestamp}`, or the greeting",
        extra_json_schema={"contentMediaType": "application/json", "contentSchema": {"type": "object"}},
    ),
]


class StreamEventOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    event: StreamEventName
    data: JsonText
    id: Annotated[str, Meta(pattern="^[0-9]+$")] | UnsetType = UNSET
    retry: int | UnsetType = UNSET
