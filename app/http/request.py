"""Request bodies decoded strictly, straight into the handler's wire type.

Litestar decodes JSON to Python objects and then converts them leniently (so `"10"` would pass as an integer).
Agora's contract is strict JSON types: `json_input.parse` reads the body as standard JSON (refusing duplicate keys
and runaway nesting, which msgspec would let through), and msgspec converts that value strictly into the `data`
annotation; Litestar's later conversion sees the finished Struct and passes it through. A route that takes no body
still refuses one that is not JSON: a client sending the wrong bytes should hear about it, not see the action run.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.utils.empty import value_or_default

from app.http import json_input, pagination

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _problem(message: str, key: str | None) -> ValidationException:
    return ValidationException(detail=message, extra=[{"message": message, "key": key, "source": "body"}])


def checked_json(body: bytes) -> Any:
    """The body's JSON value, or the 422 every malformed body gets."""
    try:
        return json_input.parse(body)
    except json_input.BadJSON as error:
        raise _problem(str(error), None) from None


class StrictJSONRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        cached = value_or_default(self._connection_state.json, None)
        if cached is not None:
            return cached
        field = self.route_handler.parsed_data_field
        target: Any = field.annotation if field is not None else Any
        try:
            value = msgspec.convert(checked_json(await self.body()), type=target, strict=True)
        except msgspec.ValidationError as error:
            message, _, location = str(error).partition(" - at `$")
            path = location.rstrip("`").lstrip(".") or None
            raise _problem(message, path) from None
        self._json = self._connection_state.json = value
        return value


async def before_request(request: Request[Any, Any, Any]) -> None:
    """Every route, after its guards: a route that reads no body must still be sent an empty or a JSON one; and
    the cursors it mints or reads are bound to its list."""
    if request.method in _BODY_METHODS and request.route_handler.parsed_data_field is None:
        checked_json(await request.body())
    pagination.bind_list(request)
