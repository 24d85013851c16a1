"""Tasks: posting with escrow, reading, browsing, searching; cancel and rollback."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from app.repo import claims as claim_rows
from app.repo import ledger
from app.repo import tasks as task_rows
from app.services import callbacks, task_clock
from app.services.agents import category_not_found
from app.services.uow import UnitOfWork, must_exist
from app.services.webhooks import UrlCheck
from domain import transitions
from domain.errors import InsufficientCredits, InvalidParameter
from domain.tasks import (
    Actor,
    NewTask,
    Sort,
    TaskFilter,
    TaskRecord,
    TaskStatus,
    ineligible_agent,
)
from domain.transitions import OpenedTask

_TERM = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class TaskChange:
    task_id: int
    status: TaskStatus
    affected_agent_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PostedTask:
    record: TaskRecord
    callback_secret: str | None  # the callback's signing secret, shown this once (None: no callback_url)


async def post_task(uow: UnitOfWork, actor: Actor, task: NewTask, *, check_url: UrlCheck | None = None) -> PostedTask:
    """Post a task: its budget moves from the operator's wallet into the task's escrow, or nothing happens. With a
    `callback_url`, its callback endpoint is created with it (`check_url` is the webhooks' SSRF guard)."""
    posting = transitions.post_task(task, actor, now=datetime.now(UTC))
    if task.callback_url is not None:
        await callbacks.check_url(uow, task.callback_url, check_url)
    async with uow:
        context = must_exist(
            await task_rows.post_context(
                uow.connection,
                actor.operator_id,
                task.category_id,
                task.eligible_agent_ids,
                callback=task.callback_url is not None,
            ),
            f"operator {actor.operator_id}'s wallet",
        )
        if task.category_id is not None and context.category is None:
            raise category_not_found(task.category_id)
        if context.ineligible_agent_id is not None:
            raise ineligible_agent(context.ineligible_agent_id)
        if context.wallet_balance < task.budget_credits:
            raise InsufficientCredits(balance=context.wallet_balance, needed=task.budget_credits)
        posted = posting.opened(
            OpenedTask(
                task_id=context.task_id,
                escrow_account_id=context.escrow_account_id,
                wallet_account_id=context.wallet_account_id,
            )
        )
        record = task_rows.new_record(task, context, poster_operator_id=actor.operator_id)
        callback = None
        if task.callback_url is not None:
            webhook_id = must_exist(context.callback_webhook_id, "the callback's webhook id")
            callback = callbacks.new_callback(webhook_id, task.callback_url)
        result = PostedTask(record, callback.secret if callback else None)
        # The wallet is locked since the balance was read, so the hold cannot overdraw it (the no-overdraft CHECK
        # is the second guard) and needs no answer before the COMMIT: it goes out with it. The callback's row
        # comes after the task's (its foreign key) and before the hold and the events, which it receives.
        async with uow.committing(result):
            await task_rows.insert(
                uow.connection, task, context, poster_operator_id=actor.operator_id, poster_agent_id=actor.agent_id
            )
            if callback is not None:
                await callbacks.add(uow, callback, task_id=record.id, poster_agent_id=actor.agent_id)
            await ledger.send(uow.connection, posted.hold)
            await uow.publish(posted.events, posted.match)
    return result


async def get_task(uow: UnitOfWork, task_id: int) -> TaskRecord:
    """The task, with what time made due on it (its expiry, its lease's end) written first."""
    return await task_clock.current(uow, task_id)


async def browse(
    uow: UnitOfWork, task_filter: TaskFilter, sort: Sort, after: dict[str, Any] | None, limit: int
) -> list[TaskRecord]:
    return await uow.read(task_rows.browse(task_filter, sort, after, limit))


def search_query(text: str) -> str:
    """Every word, English-stemmed and prefix-matched, all required: "parse pdf" finds "parsing PDFs"."""
    terms = _TERM.findall(text.replace("_", " "))
    if not terms:
        raise no_usable_terms()
    return " & ".join(f"{term.lower()}:*" for term in terms)


def no_usable_terms() -> InvalidParameter:
    return InvalidParameter(
        "Search query contains no valid terms",
        "Use one or more words, e.g. q=parse pdf (very common words like 'the' are ignored).",
    )


async def search(
    uow: UnitOfWork, text: str, task_filter: TaskFilter, after: dict[str, Any] | None, limit: int
) -> list[TaskRecord]:
    usable, records = await uow.read(task_rows.search(search_query(text), task_filter, after, limit))
    if not usable:
        raise no_usable_terms()
    return records


async def worker_tasks(uow: UnitOfWork, agent_id: int, *, before_id: int | None, limit: int) -> list[TaskRecord]:
    connection = await uow.reader()
    return await task_rows.for_worker(connection, agent_id, uow.viewer, before_id=before_id, limit=limit)


async def cancel(uow: UnitOfWork, actor: Actor, task_id: int) -> TaskChange:
    """Cancel an open or claimed task: every bid is rejected and the whole escrow goes back to the poster."""
    async with uow:
        lock = partial(task_rows.lock_for_review, uow.connection, task_id, None)
        locked = await task_clock.locked(uow, task_id, lock, lambda held: held.task)
        cancellation = transitions.cancel(locked, actor)
        rejected = await claim_rows.reject(uow.connection, task_id, cancellation.rejection)
        await uow.publish(cancellation.events)
        await task_rows.update(uow.connection, cancellation.task)
        await ledger.post(uow.connection, cancellation.refund)
        change = TaskChange(task_id, cancellation.task.status, tuple(rejected))
        await uow.commit(change)
    return change


async def rollback(uow: UnitOfWork, actor: Actor, task_id: int) -> TaskChange:
    """Reopen a claimed or in-progress task: the assigned bid is rejected, the escrow stays held."""
    async with uow:
        task = await task_clock.locked(
            uow, task_id, partial(task_rows.lock, uow.connection, task_id), lambda held: held
        )
        reopening = transitions.rollback(task, actor)
        displaced = await claim_rows.reject(uow.connection, task_id, reopening.rejection)
        await uow.publish(reopening.events)
        await task_rows.update(uow.connection, reopening.task)
        change = TaskChange(task_id, reopening.task.status, tuple(displaced))
        await uow.commit(change)
    return change


async def escrow_held(uow: UnitOfWork, operator_id: int) -> int:
    return await task_rows.escrow_held(await uow.reader(), operator_id)
