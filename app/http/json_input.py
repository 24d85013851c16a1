"""What a request body must be before anything reads it: standard JSON, UTF-8, no duplicate keys, bounded depth.

msgspec decodes bodies fast and strictly into the wire types, but it lets a repeated key through (the last one
wins, so `{"budget_credits": 10, "budget_credits": 900}` means what the last copy says while a proxy or an audit
log may read the first) and recurses as deep as Python allows (a body of 100,000 brackets raised RecursionError, a
500). Every body is checked here once, the same way for the idempotency fingerprint, the typed decode and routes
that take no body, so a bad body gets the same answer whatever headers came with it.
"""

from __future__ import annotations

import decimal
import json
from typing import Any

#: Deeper than any wire type Agora accepts (metadata objects included); deep enough for any honest client.
MAX_DEPTH = 32
#: A whole number written with a fraction or exponent is read as an int up to this many digits (past int64's 19).
_WHOLE_DIGITS = 30


class BadJSON(ValueError):
    """The body is not acceptable JSON; the message says why, for the caller."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadJSON(f"Request body repeats the key '{key}' in one object")
            seen.add(key)
    return value


def _number(text: str) -> float | int:
    """A JSON number with a fraction or exponent: an int when its value is whole (JSON Schema and JavaScript count
    `2.0` as the integer 2, and so do TaskHive's clients), else a float. Exponents are bounded first: `1e999999999`
    must not become a billion-digit int."""
    value = decimal.Decimal(text)
    if value.is_finite() and abs(value.adjusted()) <= _WHOLE_DIGITS and value == value.to_integral_value():
        return int(value)
    return float(text)


def _no_constants(name: str) -> Any:
    raise BadJSON(f"Request body is not valid JSON ({name} is not a JSON number)")


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def parse(body: bytes) -> Any:
    """The body's JSON value (None for an empty body), or BadJSON."""
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJSON("Request body is not valid JSON (it is not UTF-8 text)") from None
    too_deep = BadJSON(f"Request body is nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants, parse_float=_number)
    except RecursionError:
        raise too_deep from None
    except json.JSONDecodeError as error:
        raise BadJSON(
            f"Request body is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    # Only a body with more brackets than the limit can be too deep: most bodies skip the walk.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _depth_exceeds(value, MAX_DEPTH):
        raise too_deep
    return value
