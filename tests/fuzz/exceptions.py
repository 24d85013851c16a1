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
    error_code: str  # the API's `error.code`
    operations: frozenset[str] | None  # operationIds; None: every operation
    reason: str  # the business rule a schema cannot express
    condition: Callable[[object, dict], bool] | None = None  # (case, error) -> bool, when the code alone is too broad


def _sent_cursor(case, error: dict) -> bool:
    return "cursor" in (case.query or {}) and "cursor" in error.get("message", "").lower()


ACCEPTED: tuple[Accepted, ...] = (
    Accepted(
        name="past-deadline",
        check="positive_data_acceptance",
        error_code="INVALID_DEADLINE",
        operations=frozenset({"createTask"}),
        reason="A deadline must be later than now; JSON Schema's date-time cannot say 'in the future'.",
    ),
    Accepted(
        name="foreign-cursor",
        check="positive_data_acceptance",
        error_code="INVALID_PARAMETER",
        operations=None,
        reason="A cursor is a token the server signed for a previous page; any string it did not issue is refused "
        "(400), which is the point. The schema can only say 'string'.",
        condition=_sent_cursor,
    ),
)


def accepted_for(checks: tuple[str, ...], operation_id: str | None, case, error: dict) -> Accepted | None:
    """The exception that covers this failure, if one does."""
    for exception in ACCEPTED:
        if exception.check not in checks or error.get("code") != exception.error_code:
            continue
        if exception.operations is not None and operation_id not in exception.operations:
            continue
        if exception.condition is None or exception.condition(case, error):
            return exception
    return None
