"""A dedicated connection that LISTENs for the outbox's wake-up notifications.

Notifications are hints only: one that is missed (the connection was down) costs a poll interval, never an event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import structlog

from app.cancellation import raise_if_cancelled
from app.repo.events import NOTIFY_CHANNEL

log = structlog.get_logger("agora.listen")


async def listen_forever(url: str, on_notify: Callable[[], None], *, name: str, retry_seconds: float = 1.0) -> None:
    """Call `on_notify` for every notification on the outbox channel; reconnect after any failure. Runs until
    cancelled. Also calls it once after each (re)connection, since notifications sent meanwhile were lost."""
    while True:
        try:
            connection = await psycopg.AsyncConnection.connect(url, autocommit=True, application_name=name)
        except (psycopg.Error, OSError) as error:
            log.warning("listen_connect_failed", error=str(error))
            await asyncio.sleep(retry_seconds)
            continue
        try:
            async with connection:
                await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                on_notify()
                async for _ in connection.notifies():
                    on_notify()
        except (psycopg.Error, OSError) as error:
            raise_if_cancelled()
            log.warning("listen_lost", error=str(error))
            await asyncio.sleep(retry_seconds)
