"""A loop waiting on an event stops when cancelled, even when the event is set at the same moment (the delivery
worker's stop(): cancelled deliveries wake the loop as it is cancelled)."""

from __future__ import annotations

import asyncio

import pytest

from app.cancellation import wait_for_event


async def _loop(event: asyncio.Event) -> None:
    while True:
        await wait_for_event(event, 10)
        event.clear()


@pytest.mark.parametrize("trial", range(20))
async def test_a_cancellation_that_arrives_with_the_event_stops_the_loop(trial):
    event = asyncio.Event()
    task = asyncio.create_task(_loop(event))
    await asyncio.sleep(0)  # the loop is waiting
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)


async def test_the_wait_says_whether_the_event_came():
    event = asyncio.Event()
    assert await wait_for_event(event, 0.01) is False
    event.set()
    assert await wait_for_event(event, 0.01) is True
