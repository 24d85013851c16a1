"""Background loops stop when cancelled, even when cleanup turns the cancellation into an ordinary error.

Cancelling a task in the middle of a query makes psycopg cancel it on the server; the cleanup that follows (a
ROLLBACK, giving the connection back) can then raise an ordinary exception that replaces the CancelledError. A loop
that retries after `except Exception` must not take that for a database hiccup and run on: stopping would wait
forever (seen in CI as a live webhook test that never ended).
"""

from __future__ import annotations

import asyncio

from app.config import load_settings
from app.outbound.webhook_client import WebhookClient
from app.repo.connections import Connection
from app.workers.webhook_dispatcher import DeliveryWorker
from domain.webhooks import parse_allow_cidrs


class CleanupFailsOnCancel:
    """A connection source whose checkout is interrupted, and whose cleanup then fails, as a broken ROLLBACK does."""

    nested = False

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def acquire(self) -> Connection:
        self.entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("ROLLBACK failed: the connection is in an unknown state") from None
        raise AssertionError("unreachable")

    async def release(self, connection: Connection) -> None:
        return None


async def test_the_delivery_worker_stops_when_cancellation_becomes_an_error():
    settings = load_settings({})
    source = CleanupFailsOnCancel()
    client = WebhookClient(allow=parse_allow_cidrs(""), timeout=1.0)
    worker = DeliveryWorker(source, client, settings)
    try:
        await worker.start()
        await asyncio.wait_for(source.entered.wait(), 5)
        stopping = asyncio.ensure_future(worker.stop())
        done, _ = await asyncio.wait([stopping], timeout=5)
        assert done, "stop() still waits: the loop took the failed cleanup for a database error and ran on"
    finally:
        await client.aclose()
