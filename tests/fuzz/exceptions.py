"""The one list of schemathesis failures that are not the API's fault, each with the rule that makes it so.

A check here is wrong only for the named operation, for the named error code of the API's envelope, and only when
the condition holds; every other failure of the same check still fails the run. The hooks drop the failures that
match (schemathesis counts them as "dropped by filter_failure") and log each drop, so the harness reports how often
each exception was used. Nothing here may hide a 5xx: `not_a_server_error` has no exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Accepted:
    name: str
    check: str  # schemathesis' check name
    error_codes: tuple[str, ...]  # the API's `error.code`
    operations: frozenset[str] | None  # operationIds; None: every operation
    reason: str  # the business rule a schema cannot express
    condition: Callable[[object, dict], bool] | None = None  # (case, error) -> bool, when the code alone is too broad


def _sent_cursor(case, error: dict) -> bool:
    return "cursor" in (case.query or {}) and "cursor" in error.get("message", "").lower()


def _says(words: str) -> Callable[[object, dict], bool]:
    """The error's message says this (for a code that also covers what the document can express)."""
    return lambda case, error: words in error.get("message", "")


ACCEPTED: tuple[Accepted, ...] = (
    Accepted(
        name="past-deadline",
        check="positive_data_acceptance",
        error_codes=("INVALID_DEADLINE",),
        operations=frozenset({"createTask"}),
        reason="A deadline must be later than now; JSON Schema's date-time cannot say 'in the future'.",
    ),
    Accepted(
        name="past-expiry",
        check="positive_data_acceptance",
        error_codes=("INVALID_EXPIRY",),
        operations=frozenset({"createTask"}),
        reason="A task's expires_at must be later than now; JSON Schema's date-time cannot say 'in the future'.",
    ),
    Accepted(
        name="column-of-the-other-board",
        check="positive_data_acceptance",
        error_codes=("INVALID_PARAMETER",),
        operations=frozenset({"getMyBoardColumn"}),
        reason="Each role's board has its own columns (a worker has no `closed`, a poster no `bidding`); the path "
        "lists every column and the query every role, and a schema cannot tie one parameter's values to another's.",
        condition=_says("board has no column"),
    ),
    Accepted(
        name="ineligible-agent",
        check="positive_data_acceptance",
        error_codes=("VALIDATION_ERROR",),
        operations=frozenset({"createTask"}),
        reason="A directed task names active agents of other operators (DESIGN §5): which ids those are is state, "
        "not schema.",
        condition=_says("is not an active agent of another operator"),
    ),
    Accepted(
        name="foreign-cursor",
        check="positive_data_acceptance",
        error_codes=("INVALID_PARAMETER",),
        operations=None,
        reason="A cursor is a token the server signed for a previous page; any string it did not issue is refused "
        "(400), which is the point. The schema can only say 'string'.",
        condition=_sent_cursor,
    ),
    Accepted(
        name="null-link",
        check="positive_data_acceptance",
        error_codes=("INVALID_PARAMETER",),
        operations=None,
        reason="Not the API's fault: a stateful link schemathesis inferred took a field that is null in that "
        "response (an account's task_id, for a wallet) as a path id, and sent the path with 'None' in it.",
        condition=lambda case, error: any(value is None for value in (case.path_parameters or {}).values()),
    ),
    Accepted(
        name="unknown-event",
        check="positive_data_acceptance",
        error_codes=("INVALID_PARAMETER", "EVENT_EXPIRED"),
        operations=frozenset({"streamMyEvents", "streamTaskEvents"}),
        reason="Last-Event-ID must name an event that exists (or still exists: events are kept 30 days); the "
        "schema can only give its form, digits.",
        condition=lambda case, error: (
            error.get("code") == "EVENT_EXPIRED" or "not a known event" in error.get("message", "")
        ),
    ),
    Accepted(
        name="bid-above-budget",
        check="positive_data_acceptance",
        error_codes=("INVALID_CREDITS",),
        operations=frozenset({"createClaim", "bulkClaims"}),
        reason="proposed_credits must be at most the task's budget (DESIGN §2): a bound set by another resource.",
    ),
    Accepted(
        name="bid-needs-a-price",
        check="positive_data_acceptance",
        error_codes=("VALIDATION_ERROR",),
        operations=frozenset({"createClaim", "bulkClaims"}),
        reason="proposed_credits may be left out only on an instant task (DESIGN §5), which takes its budget; a "
        "task's claim mode is another resource's state, not the claim's schema.",
        condition=_says("this task takes bids"),
    ),
    Accepted(
        name="insufficient-credits",
        check="positive_data_acceptance",
        error_codes=("INSUFFICIENT_CREDITS",),
        operations=frozenset({"createTask", "adjustOperatorCredits"}),
        reason="A wallet never goes below zero (DESIGN §2): a budget or an admin debit larger than the balance is "
        "refused, and the balance is state (the fuzzer's own debits move it), not schema.",
    ),
    Accepted(
        name="ssrf-guard",
        check="positive_data_acceptance",
        error_codes=("WEBHOOK_URL_FORBIDDEN",),
        operations=frozenset({"createWebhook", "updateWebhook", "createTask"}),
        reason="A webhook URL's (or a task's callback_url's) host must resolve, and only to public addresses "
        "(reliability.md §6.2); where a name resolves is not something a schema knows. Deliberately fuzzed with the "
        "guard on.",
    ),
    Accepted(
        name="nul-in-text",
        check="positive_data_acceptance",
        error_codes=("VALIDATION_ERROR",),
        operations=None,
        reason="PostgreSQL text cannot hold U+0000, so a NUL anywhere in a text field is a 422; the document could "
        "say so only with a pattern on every string. NUL stays in the generated data so that it is still sent "
        "everywhere (paths, queries, headers), where it must never cause a 5xx.",
        condition=_says("cannot contain NUL"),
    ),
    Accepted(
        name="no-search-terms",
        check="positive_data_acceptance",
        error_codes=("INVALID_PARAMETER",),
        operations=frozenset({"searchTasks"}),
        reason="A search needs at least one word the full-text parser keeps (stop words and punctuation are "
        "dropped); which strings those are is the text-search configuration's, not the schema's.",
        condition=_says("no valid terms"),
    ),
)


def accepted_for(checks: tuple[str, ...], operation_id: str | None, case, error: dict) -> Accepted | None:
    """The exception that covers this failure, if one does."""
    for exception in ACCEPTED:
        if exception.check not in checks or error.get("code") not in exception.error_codes:
            continue
        if exception.operations is not None and operation_id not in exception.operations:
            continue
        if exception.condition is None or exception.condition(case, error):
            return exception
    return None
