"""Where a stream resumes: the Last-Event-ID header wins over the last_event_id query parameter, and a malformed
value is refused wherever it came from (the fuzzer found a bad query value ignored when the header was sent)."""

from __future__ import annotations

import pytest

from app.services import event_stream
from domain.errors import InvalidParameter


@pytest.mark.parametrize(
    ("header", "query"), [("0", "\u008a"), ("0", "abc"), (None, "-1"), ("x", None), ("0", "1" * 19)]
)
async def test_a_malformed_position_is_refused_from_the_header_or_the_query(uow, header, query):
    with pytest.raises(InvalidParameter, match="must be an event id"):
        await event_stream.resume_position(uow, header, query)


async def test_the_header_wins_over_the_query(uow):
    origin = await event_stream.resume_position(uow, "0", None)
    assert await event_stream.resume_position(uow, "0", "999999999999") == origin  # the query's event is not read
    assert await event_stream.resume_position(uow, None, "0") == origin
    assert await event_stream.resume_position(uow, None, None) is None
