"""A task's callback: made with the task (its URL checked like a webhook's, its secret sealed like one), and its
delivery log and redelivery, which the poster's operator's agents may use and nobody else."""

from __future__ import annotations

from dataclasses import dataclass

from app.repo import callbacks as callback_rows
from app.repo import webhooks as webhook_rows
from app.repo.callbacks import CallbackAccess
from app.services import sealing
from app.services.uow import UnitOfWork, must_exist
from app.services.webhooks import UrlCheck
from domain import deliveries as rules
from domain.deliveries import DeliveryRecord, DeliveryStatus
from domain.events import SUBSCRIBABLE
from domain.tasks import Actor, not_poster, task_not_found
from domain.webhooks import new_secret


async def check_url(uow: UnitOfWork, url: str, check: UrlCheck | None) -> None:
    """The SSRF guard of webhook registration, before the posting's transaction: no pooled connection is held and
    no row lock waits while the name resolves."""
    if check is None:
        raise RuntimeError("a task with a callback_url needs the webhook URL check")
    await uow.release_connection()
    await check(url)


@dataclass(frozen=True, slots=True)
class NewCallback:
    webhook_id: int
    url: str
    secret: str  # returned once, in the posting's answer (and its stored idempotent replay, sealed)
    sealed_secret: bytes  # as stored: sealed to "webhook:<id>", like every webhook secret


def new_callback(webhook_id: int, url: str) -> NewCallback:
    secret = new_secret()
    sealed_secret = sealing.current().seal(secret.encode(), sealing.webhook_context(webhook_id))
    return NewCallback(webhook_id, url, secret, sealed_secret)


async def add(uow: UnitOfWork, callback: NewCallback, *, task_id: int, poster_agent_id: int) -> None:
    """Inside the posting's transaction. It subscribes to every event type: the trigger narrows them to the task's
    events for its poster agent."""
    await callback_rows.insert(
        uow.connection,
        webhook_id=callback.webhook_id,
        task_id=task_id,
        agent_id=poster_agent_id,
        url=callback.url,
        events=SUBSCRIBABLE,
        sealed_secret=callback.sealed_secret,
    )


async def _readable(uow: UnitOfWork, actor: Actor, task_id: int) -> CallbackAccess:
    """404 for a task the reader cannot see, 403 for one it can but did not post."""
    access = await uow.read(callback_rows.access(task_id))
    if access is None:
        raise task_not_found(task_id)
    if access.poster_operator_id != actor.operator_id:
        raise not_poster("read this task's callback deliveries")
    return access


async def deliveries(
    uow: UnitOfWork,
    actor: Actor,
    task_id: int,
    *,
    before_id: int | None,
    limit: int,
    status: DeliveryStatus | None,
) -> list[DeliveryRecord]:
    """Newest first, with their attempts; none for a task posted without a callback."""
    access = await _readable(uow, actor, task_id)
    if access.webhook_id is None:
        return []
    return await webhook_rows.deliveries(
        await uow.reader(), access.webhook_id, before_id=before_id, limit=limit, status=status
    )


async def redeliver(uow: UnitOfWork, actor: Actor, task_id: int, delivery_id: int) -> DeliveryRecord:
    """Send a finished delivery again (same webhook-id, a fresh retry schedule). A callback the disable rule
    switched off is switched back on: no PATCH reaches a callback, and asking for a delivery says the receiver is
    back. Deliveries that failed meanwhile stay failed until redelivered one by one."""
    access = await _readable(uow, actor, task_id)
    if access.webhook_id is None:
        raise rules.callback_delivery_not_found(task_id, delivery_id)
    webhook_id = access.webhook_id
    async with uow:
        # Whatever the read above saw: a disable committed since then is undone too, so the delivery scheduled next
        # is not left pending on an endpoint no worker claims from. The endpoint's row before its delivery's, the
        # order the worker locks them in when it disables one (app.services.deliveries.finish_attempt).
        await callback_rows.switch_on(uow.connection, webhook_id)
        if not await webhook_rows.redeliver(uow.connection, webhook_id, delivery_id):
            existing = await webhook_rows.delivery(uow.connection, webhook_id, delivery_id)
            if existing is None:
                raise rules.callback_delivery_not_found(task_id, delivery_id)
            raise rules.delivery_pending(delivery_id)
        delivery = must_exist(
            await webhook_rows.delivery(uow.connection, webhook_id, delivery_id), f"delivery {delivery_id}"
        )
        await uow.commit(delivery)
    return delivery
