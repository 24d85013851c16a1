"""The task sweeper: every few seconds, in every server process, expire the tasks whose `expires_at` has passed and
end the leases that have run out (app.services.task_clock.sweep), so that time passes on tasks nobody touches.

Processes need no coordination: each task is handled in its own transaction under its row lock, and a sweep skips
tasks another transaction holds, so two sweepers (or a sweeper and a request touching the task) never wait on each
other and never handle a task twice.
"""

from __future__ import annotations

import asyncio

import structlog

from app.cancellation import raise_if_cancelled
from app.repo.connections import ConnectionLease, ConnectionSource
from app.services import task_clock
from app.services.uow import UnitOfWork

log = structlog.get_logger("agora.tasks")

#: Tasks handled per connection lease; a full batch is followed by the next one at once, not after the interval.
BATCH = 100


async def sweep_once(source: ConnectionSource) -> int:
    """One batch of due tasks, on a connection of the pool; returns how many changed."""
    lease = ConnectionLease(source)
    try:
        return await task_clock.sweep(UnitOfWork(lease), limit=BATCH)
    finally:
        await lease.release()


async def run(source: ConnectionSource, interval_seconds: float) -> None:
    """Sweep until cancelled: at once, then every `interval_seconds` (at once again after a full batch)."""
    while True:
        swept = 0
        try:
            swept = await sweep_once(source)
            if swept:
                log.info("tasks_swept", changed=swept)
        except Exception as exc:
            raise_if_cancelled()
            log.warning("task_sweep_failed", error=str(exc))
        if swept < BATCH:
            await asyncio.sleep(interval_seconds)
