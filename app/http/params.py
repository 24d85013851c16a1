"""Path and query parameters: each declared once, with the schema the OpenAPI document shows for it.

Some are checked by the handlers themselves rather than by Litestar, for TaskHive's messages ("Task ID must be a
positive integer", "limit must be between 1 and 100", "Invalid sort value: 'x'"); their declared schema
(`schema_extra`) says exactly what that check accepts. A text parameter is never null on the wire (Litestar reads
`?status=null` as the text "null"), so those schemas drop the null a `str | None` annotation would add.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar.openapi.spec import Example
from litestar.params import HeaderParameter, Parameter, QueryParameter

from app.http.pagination import MAX_LIMIT
from domain.deliveries import DeliveryStatus
from domain.error_codes import INVALID_PARAMETER
from domain.ledger import AccountKind, TransferKind
from domain.tasks import MAX_TAG_LENGTH, MAX_TAGS, PRIORITY_ALIASES, Priority, Sort, TaskStatus

#: The largest id PostgreSQL's bigint holds; past it a path id is refused before any query.
MAX_ID = 2**63 - 1
_DIGITS = re.compile(r"\+?[0-9]+")  # what a server reading an integer off the wire accepts (int() without spaces)
_TEXT = {"type": "string", "oneOf": None}


def _path_id(what: str) -> Any:
    schema = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}
    return Annotated[
        str, Parameter(description=f"The {what}'s id (a positive integer)", schema_extra=schema, examples=[_ID])
    ]


_ID = Example(value=42)
TaskId = _path_id("task")
ClaimId = _path_id("claim (bid)")
DeliverableId = _path_id("deliverable")
AgentId = _path_id("agent")
OperatorId = _path_id("operator")
WebhookId = _path_id("webhook")
DeliveryId = _path_id("delivery")


def parse_id(value: str, what: str) -> int:
    """A path id as TaskHive checks it: 400 INVALID_PARAMETER unless a positive integer; also past bigint."""
    if _DIGITS.fullmatch(value) and int(value) > 0:
        number = int(value)
        if number <= MAX_ID:
            return number
        raise INVALID_PARAMETER.error(
            f"{what} ID {value} is out of range: it must be a positive integer up to {MAX_ID}",
            f"Use the numeric {what.lower()} id an earlier response gave, e.g. 42.",
        )
    raise INVALID_PARAMETER.error(
        f"{what} ID must be a positive integer", f"Use the numeric {what.lower()} id, e.g. 42."
    )


Cursor = Annotated[
    str | None,
    QueryParameter(
        description="Opaque cursor: the previous page's `meta.cursor`", schema_extra={**_TEXT, "minLength": 1}
    ),
]
Limit = Annotated[
    int,
    QueryParameter(description=f"Items per page, 1-{MAX_LIMIT}", schema_extra={"minimum": 1, "maximum": MAX_LIMIT}),
]


def _enum(values: list[str], description: str) -> Any:
    return Annotated[str | None, QueryParameter(description=description, schema_extra={**_TEXT, "enum": values})]


TaskStatusFilter = _enum([s.value for s in TaskStatus], "Only tasks in this status (default open)")
SortOrder = Annotated[
    str,
    QueryParameter(
        description="newest or oldest first, by budget, or by priority (urgent first, then newest)",
        schema_extra={"enum": [s.value for s in Sort]},
    ),
]
PriorityFilter = _enum(
    [p.value for p in Priority] + list(PRIORITY_ALIASES), "Only tasks of this priority (`medium` is `normal`)"
)
_TAG = f" *[A-Za-z0-9-]{{1,{MAX_TAG_LENGTH}}} *"
#: 1 to MAX_TAGS tags, comma-separated, spaces around each allowed (app.http.routes.tasks parses it the same way).
TAGS_PATTERN = f"^{_TAG}(,{_TAG}){{0,{MAX_TAGS - 1}}}$"
TagsFilter = Annotated[
    str | None,
    QueryParameter(
        description=f"Only tasks carrying every one of these tags (comma-separated, at most {MAX_TAGS}; any case)",
        schema_extra={**_TEXT, "pattern": TAGS_PATTERN},
        examples=[Example(value="python,pdf")],
    ),
]
DeliveryStatusFilter = _enum([s.value for s in DeliveryStatus], "Only deliveries in this status")
TransferKindFilter = Annotated[TransferKind | None, QueryParameter(description="Only transfers of this kind")]
AccountKindFilter = Annotated[AccountKind | None, QueryParameter(description="Only accounts of this kind")]
SEARCH_MAX_LENGTH = 200
SearchText = Annotated[
    str | None,
    QueryParameter(
        description=f"Words to find (1-{SEARCH_MAX_LENGTH} characters): stemmed, prefix-matched, all required",
        required=True,
        schema_extra={**_TEXT, "minLength": 1, "maxLength": SEARCH_MAX_LENGTH},
        examples=[Example(value="parse pdf")],
    ),
]
# Litestar checks these; its schema drops a minimum of 0, hence schema_extra.
CategoryFilter = Annotated[
    int | None,
    QueryParameter(description="Only tasks in this category id", ge=1, le=MAX_ID, schema_extra={"minimum": 1}),
]
BudgetBound = Annotated[
    int | None,
    QueryParameter(description="Inclusive budget bound, in credits", ge=0, le=MAX_ID, schema_extra={"minimum": 0}),
]
RowFilter = Annotated[int | None, QueryParameter(description="Only rows about this id", ge=1, le=MAX_ID)]
EVENT_ID_PATTERN = "^[0-9]{0,18}$"  # empty: from now
LastEventIdQuery = Annotated[
    str | None,
    QueryParameter(
        name="last_event_id",
        description="Resume after this event id (as the Last-Event-ID header, for clients that cannot set headers)",
        schema_extra={**_TEXT, "pattern": EVENT_ID_PATTERN},
    ),
]
LastEventIdHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        description="Resume after this event id: the `id:` of the last event received",
        schema_extra={**_TEXT, "pattern": EVENT_ID_PATTERN},
    ),
]
