"""Request bodies decoded strictly, straight into the handler's wire type.

Litestar decodes JSON to Python objects and then converts them leniently (so `"10"` would pass as an integer).
Agora's contract is strict JSON types, so the body is decoded once, strictly, into the `data` annotation; the
later conversion sees the finished Struct and passes it through.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.utils.empty import value_or_default


def _problem(message: str, key: str | None) -> ValidationException:
    return ValidationException(detail=message, extra=[{"message": message, "key": key, "source": "body"}])


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        cached = value_or_default(self._connection_state.json, None)
        if cached is not None:
            return cached
        field = self.route_handler.parsed_data_field
        target: Any = field.annotation if field is not None else Any
        body = await self.body()
        try:
            value = msgspec.json.decode(body or b"null", type=target, strict=True)
        except msgspec.ValidationError as error:
            message, _, location = str(error).partition(" - at `$")
            path = location.rstrip("`").lstrip(".") or None
            raise _problem(message, path) from None
        except msgspec.DecodeError as error:
            raise _problem(f"Request body is not valid JSON ({error})", None) from None
        self._json = self._connection_state.json = value
        return value
