"""Time passing on tasks (domain.clock): expiries and lease ends, written by the sweeper or by the first request
that touches a task after its time has passed, whichever takes the task's lock first.

Three ways in, one transition code:
- `sweep`: the sweeper (app.workers.task_sweeper) picks due tasks one by one, each in its own transaction under its
  row lock, skipping tasks another transaction holds;
- `current`: a read of one task (GET /tasks/{id}, its bids, deliverables or event stream) that finds a deadline
  passed writes it, in a transaction of its own, and reads the task again;
- `locked`: a write (a bid, an accept, a cancel, a delivery...) locks the task, writes what is due first, keeps it
  even when the request is then refused, and decides on the task as it now is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.repo import claims as claim_rows
from app.repo import ledger
from app.repo import task_clock as clock_rows
from app.repo import tasks as task_rows
from app.services.uow import UnitOfWork, must_exist
from domain import clock
from domain.clock import Lapse
from domain.tasks import TaskRecord, TaskState, task_not_found

L = TypeVar("L")


async def _write(uow: UnitOfWork, lapse: Lapse) -> None:
    """The lapse's rows, under the task's lock held by this transaction."""
    connection = uow.connection
    await claim_rows.reject(connection, lapse.task.task_id, lapse.rejection)
    await uow.publish(lapse.events)
    await task_rows.update(connection, lapse.task)
    if lapse.refund is not None:
        await ledger.post(connection, lapse.refund)


#: The most lapses one task can have due at once: its lease's end, then the expiry of the task that reopens.
MAX_LAPSES = 2


async def _catch_up(uow: UnitOfWork, task_id: int) -> list[Lapse]:
    """Lock the task (again, if this transaction holds it) and write what is due on it now, in order, each decided on
    the task as the one before left it; returns what was written."""
    written: list[Lapse] = []
    for _ in range(MAX_LAPSES):
        held = await task_rows.lock_for_clock(uow.connection, task_id)
        if held is None or held.locked.task.read_at is None:
            break
        lapse = clock.lapse(held.locked, held.bidders, held.locked.task.read_at)
        if lapse is None:
            break
        await _write(uow, lapse)
        written.append(lapse)
    return written


async def settle(uow: UnitOfWork, task_id: int) -> list[Lapse]:
    """Write what time made due on the task, in a transaction of its own; empty when nothing was (any longer) due."""
    async with uow:
        written = await _catch_up(uow, task_id)
        if not written:
            return written  # rolled back: nothing written
        await uow.commit()
    return written


async def current(uow: UnitOfWork, task_id: int) -> TaskRecord:
    """The task as its reader may see it, with any deadline that has passed written first; TASK_NOT_FOUND when
    there is no such task for the reader."""
    record, due = await uow.read(task_rows.one_on_the_clock(task_id))
    if record is None:
        raise task_not_found(task_id)
    if due:
        await settle(uow, task_id)
        record = must_exist(await task_rows.get(await uow.reader(), task_id, uow.viewer), f"task {task_id}")
    return record


async def locked(
    uow: UnitOfWork, task_id: int, lock: Callable[[], Awaitable[L | None]], task: Callable[[L], TaskState]
) -> L:
    """Lock the task with `lock` (a repository's lock read, in the open transaction), first writing what time made due
    on it: that is kept whatever the request answers (UnitOfWork.keep_written), and the task is read again under
    the lock. TASK_NOT_FOUND when there is no such task."""
    found = await lock()
    if found is None:
        raise task_not_found(task_id)
    state = task(found)
    if state.read_at is None or not clock.due(state, state.read_at):
        return found
    if not await _catch_up(uow, task_id):
        return found
    await uow.keep_written()
    return must_exist(await lock(), f"task {task_id}")


async def sweep(uow: UnitOfWork, *, limit: int) -> int:
    """Expire due tasks and end due leases, up to `limit`, each in its own transaction; returns how many. Any number
    of processes may sweep at once: each takes tasks no other transaction holds, and the domain decides again under
    the lock, so a task another sweeper or a request has just handled is left as it is."""
    done = 0
    for _ in range(limit):
        async with uow:
            task_id = await clock_rows.pick_due(uow.connection)
            if task_id is None:
                break
            written = await _catch_up(uow, task_id)
            await uow.commit()
        done += bool(written)
    return done
