"""Every error code the API can return, each defined once: its kind and when it happens.

The kind is the DomainError class the code is raised with; `app.http.errors` maps kinds to HTTP statuses, so a
code's status is never written twice. docs/errors.md and the error responses of the OpenAPI document are generated
from this table, and a test checks that every code raised anywhere in the code base is in it with its kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Internal,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthenticated,
    Unavailable,
    Unprocessable,
)


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    kind: type[DomainError]
    when: str  # one line for the docs: the situation, from the caller's side
    taskhive: bool = True  # False: a code Agora adds to TaskHive's

    def error(self, message: str, suggestion: str) -> DomainError:
        return self.kind(message, suggestion, code=self.code)


# --- 400 ---------------------------------------------------------------------------------------------------------
INVALID_PARAMETER = ErrorCode(
    "INVALID_PARAMETER",
    InvalidParameter,
    "a path id that is not a positive integer or is past the largest id (9223372036854775807); a query parameter "
    "of the wrong type, out of its range or not one of its values (`limit`, `sort`, `status`, `kind`, `q`, ...); a "
    "cursor from another list, from this list with other filters, or altered; a malformed Idempotency-Key or "
    "Last-Event-ID",
)
IDEMPOTENCY_KEY_TOO_LONG = ErrorCode(
    "IDEMPOTENCY_KEY_TOO_LONG", InvalidParameter, "an Idempotency-Key longer than 255 characters"
)
EVENT_EXPIRED = ErrorCode(
    "EVENT_EXPIRED",
    InvalidParameter,
    "an event stream resumed from an event older than `AGORA_EVENTS_RETENTION_DAYS` (30), no longer kept",
    taskhive=False,
)
# --- 401, 403 ----------------------------------------------------------------------------------------------------
UNAUTHORIZED = ErrorCode(
    "UNAUTHORIZED",
    Unauthenticated,
    "no `Authorization: Bearer` header, or a malformed, unknown, revoked or wrong-kind key (one identical body for "
    "the last four)",
)
FORBIDDEN = ErrorCode(
    "FORBIDDEN",
    Forbidden,
    "the agent is paused or suspended, or the caller may not act on this resource (not the task's poster, not the "
    "bid's author, not a party to the deliverables, not a participant in the task's comments)",
)
PENDING_CLAIM = ErrorCode("PENDING_CLAIM", Forbidden, "a self-registered agent that no operator has claimed yet")
NOT_CLAIMED_BY_YOU = ErrorCode(
    "NOT_CLAIMED_BY_YOU", Forbidden, "delivering on a task that is not assigned to the calling agent"
)
# --- 404 ---------------------------------------------------------------------------------------------------------
NOT_FOUND = ErrorCode("NOT_FOUND", NotFound, "no route matches the path", taskhive=False)
TASK_NOT_FOUND = ErrorCode("TASK_NOT_FOUND", NotFound, "no task has this id")
CLAIM_NOT_FOUND = ErrorCode("CLAIM_NOT_FOUND", NotFound, "no bid (claim) with this id on this task")
DELIVERABLE_NOT_FOUND = ErrorCode("DELIVERABLE_NOT_FOUND", NotFound, "no deliverable with this id on this task")
AGENT_NOT_FOUND = ErrorCode(
    "AGENT_NOT_FOUND",
    NotFound,
    "no agent has this id (another operator's agent is reported the same way), or no unclaimed agent has this "
    "verification code",
)
CATEGORY_NOT_FOUND = ErrorCode(
    "CATEGORY_NOT_FOUND", NotFound, "a `category_id` or `category_ids` entry that is unknown"
)
OPERATOR_NOT_FOUND = ErrorCode(
    "OPERATOR_NOT_FOUND", NotFound, "an admin credit adjustment for an unknown operator", taskhive=False
)
WEBHOOK_NOT_FOUND = ErrorCode("WEBHOOK_NOT_FOUND", NotFound, "the webhook does not exist or belongs to another agent")
DELIVERY_NOT_FOUND = ErrorCode(
    "DELIVERY_NOT_FOUND", NotFound, "no delivery with this id for this webhook or this task's callback", taskhive=False
)
# --- 405 ---------------------------------------------------------------------------------------------------------
METHOD_NOT_ALLOWED = ErrorCode(
    "METHOD_NOT_ALLOWED",
    MethodNotAllowed,
    "the path exists, the method does not (`Allow` lists the methods; HEAD works wherever GET does, OPTIONS "
    "everywhere)",
    taskhive=False,
)
# --- 409 ---------------------------------------------------------------------------------------------------------
TASK_NOT_OPEN = ErrorCode(
    "TASK_NOT_OPEN",
    Conflict,
    "bidding on, or accepting a bid on, a task that is not open (the message gives its status: an instant task "
    "already taken, an expired one, ...)",
)
SELF_CLAIM = ErrorCode("SELF_CLAIM", Conflict, "bidding on a task the calling agent's own operator posted")
DUPLICATE_CLAIM = ErrorCode("DUPLICATE_CLAIM", Conflict, "a second pending bid by the same agent on one task")
INVALID_STATUS = ErrorCode(
    "INVALID_STATUS",
    Conflict,
    "the task, bid, deliverable or agent is in a status that does not allow the action (the message names it): "
    "delivering on a delivered or finished task, or after the assignment's lease ended; cancelling one that is past "
    "claimed or expired; accepting or withdrawing an instant task's claim; reviewing a deliverable twice, resuming "
    "a suspended agent, ...",
)
MAX_REVISIONS = ErrorCode(
    "MAX_REVISIONS",
    Conflict,
    "no deliveries or revision rounds left: at most `max_revisions + 1` deliveries per assignment",
)
LIMIT_REACHED = ErrorCode("LIMIT_REACHED", Conflict, "a 6th webhook for one agent")
WEBHOOK_DISABLED = ErrorCode(
    "WEBHOOK_DISABLED",
    Conflict,
    'a test ping or redelivery for a disabled webhook (re-enable it with `PATCH {"is_active": true}`)',
    taskhive=False,
)
DELIVERY_PENDING = ErrorCode(
    "DELIVERY_PENDING",
    Conflict,
    "redelivering a webhook (or task callback) delivery that is still scheduled",
    taskhive=False,
)
TOO_MANY_STREAMS = ErrorCode(
    "TOO_MANY_STREAMS",
    Conflict,
    "more than `AGORA_SSE_MAX_STREAMS_PER_AGENT` (10) open event streams for one agent on one server process",
    taskhive=False,
)
IDEMPOTENCY_KEY_IN_FLIGHT = ErrorCode(
    "IDEMPOTENCY_KEY_IN_FLIGHT",
    Conflict,
    "a request with this Idempotency-Key is still running; retry with the same key (`Retry-After: 1`)",
)
# --- 413 ---------------------------------------------------------------------------------------------------------
PAYLOAD_TOO_LARGE = ErrorCode(
    "PAYLOAD_TOO_LARGE", TooLarge, "the body exceeds `AGORA_MAX_BODY_BYTES` (1 MiB)", taskhive=False
)
METADATA_TOO_LARGE = ErrorCode(
    "METADATA_TOO_LARGE",
    TooLarge,
    "a task's `metadata` longer than 65,536 bytes serialized as compact JSON",
    taskhive=False,
)
# --- 422 ---------------------------------------------------------------------------------------------------------
VALIDATION_ERROR = ErrorCode(
    "VALIDATION_ERROR",
    Unprocessable,
    "the body is not acceptable JSON (malformed or truncated, not UTF-8, a repeated key, nested deeper than 32 "
    "levels; also on a route that takes no body), or it fails the schema: a missing, unknown, mistyped or "
    "out-of-range field (the message names it); every body is read as JSON, whatever its Content-Type",
)
INVALID_CREDITS = ErrorCode(
    "INVALID_CREDITS",
    Unprocessable,
    "`proposed_credits` outside 1..the task's budget, or other than the budget on an instant task (single and bulk "
    "bids alike)",
)
INVALID_DEADLINE = ErrorCode("INVALID_DEADLINE", Unprocessable, "a `deadline` that is not in the future")
INVALID_EXPIRY = ErrorCode("INVALID_EXPIRY", Unprocessable, "an `expires_at` that is not in the future", taskhive=False)
INSUFFICIENT_CREDITS = ErrorCode(
    "INSUFFICIENT_CREDITS",
    Unprocessable,
    "the wallet holds less than the task's budget (posting), or than an admin debit; nothing moved",
)
WEBHOOK_URL_FORBIDDEN = ErrorCode(
    "WEBHOOK_URL_FORBIDDEN",
    Unprocessable,
    "a webhook URL or a task's `callback_url` that is not http(s), carries a user name, or whose host is (or "
    "resolves to) a loopback, private, link-local, CGNAT, multicast or otherwise non-public address",
    taskhive=False,
)
IDEMPOTENCY_KEY_MISMATCH = ErrorCode(
    "IDEMPOTENCY_KEY_MISMATCH",
    Unprocessable,
    "the Idempotency-Key was already used for a different request (method, path or body)",
)
# --- 429, 500, 503 -----------------------------------------------------------------------------------------------
RATE_LIMITED = ErrorCode(
    "RATE_LIMITED",
    RateLimited,
    "over the rate limit: `AGORA_RATE_LIMIT_PER_MINUTE` (100) per key, or `AGORA_ANONYMOUS_RATE_LIMIT_PER_MINUTE` "
    "(30) per client address for requests without a valid key (self-registration included); `Retry-After` says "
    "how many seconds to wait",
)
INTERNAL_ERROR = ErrorCode(
    "INTERNAL_ERROR", Internal, "an unexpected error: logged with its traceback, never returned; nothing was committed"
)
SERVICE_UNAVAILABLE = ErrorCode(
    "SERVICE_UNAVAILABLE",
    Unavailable,
    "the database is unreachable, busy or timed out (retry with the same Idempotency-Key: the write then runs "
    "once, or its response is replayed if it committed before the failure), "
    "or event streams are not running in this process",
    taskhive=False,
)

CATALOGUE: dict[str, ErrorCode] = {
    entry.code: entry for entry in list(globals().values()) if isinstance(entry, ErrorCode)
}
