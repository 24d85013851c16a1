"""Loops that run until cancelled, and retry after ordinary errors.

Cancelling a task in the middle of a query makes psycopg cancel it on the server; the cleanup that follows (a
ROLLBACK, giving the connection back to the pool) can raise an ordinary exception that replaces the
CancelledError. A loop that retries after `except Exception` would take that for a database hiccup and run on,
and whoever cancelled it would wait forever.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Call first thing in a retrying loop's `except Exception`: stops the loop when its task was cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait at most `seconds` for `event`; True when it was set.

    Not `asyncio.wait_for`: before Python 3.12 it runs the wait as a task of its own and can swallow a cancellation
    that arrives just as that task finishes (python/cpython#86296). The delivery worker's stop() cancels its loop
    while the deliveries it cancels set the loop's wake-up event, which is that very moment: the loop went on, and
    stop() waited for it for ever (a live test hung for its whole timeout).
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
