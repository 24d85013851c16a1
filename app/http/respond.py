"""How a write route answers: it runs the use case and renders the result, and when the request carries an
Idempotency-Key the unit of work's commit renders it instead, storing the very response that is then sent.

    return await respond(uow, deliverables.accept(uow, actor, task, deliverable), reviewed)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from litestar.serialization import encode_json

from app.services.uow import UnitOfWork

R = TypeVar("R")
E = TypeVar("E")


async def respond(uow: UnitOfWork, use_case: Awaitable[R], render: Callable[[R], E]) -> E:
    """`use_case` has not started yet (a coroutine object): the renderer is in place before it commits."""
    rendered: list[E] = []

    def stored_body(result: Any) -> bytes:
        answer = render(cast(R, result))
        rendered.append(answer)
        # Litestar encodes the returned struct the same way (its default serializer): the bytes sent are these.
        return encode_json(answer)

    if uow.idempotency is not None:
        uow.idempotency.answer_with(stored_body)
    result = await use_case
    return rendered[0] if rendered else render(result)
