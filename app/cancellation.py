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
