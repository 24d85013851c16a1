"""Webhook endpoints (TaskHive's register/list/get/delete, plus update, secret rotation, test ping, delivery log and
redelivery). Every endpoint belongs to one agent; another agent's endpoint is "not found"."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from app.repo import events as event_rows
from app.repo import webhooks as webhook_rows
from app.services import sealing
from app.services.uow import UnitOfWork, must_exist
from domain import deliveries as rules
from domain.deliveries import DeliveryRecord, DeliveryStatus, WebhookRecord
from domain.errors import Unprocessable
from domain.events import SUBSCRIBABLE, webhook_ping
from domain.webhooks import new_secret

#: Checks that a URL may receive deliveries (the SSRF guard: `WebhookClient.check_url`); raises WebhookUrlForbidden.
UrlCheck = Callable[[str], Awaitable[object]]


def check_events(events: Sequence[str]) -> tuple[str, ...]:
    unknown = [e for e in events if e not in SUBSCRIBABLE]
    if unknown:
        raise Unprocessable(
            f"Invalid event(s): {', '.join(unknown)}",
            f"Valid events: {', '.join(SUBSCRIBABLE)}",
            code="VALIDATION_ERROR",
        )
    return tuple(dict.fromkeys(events))  # repeated names subscribe once


async def register(
    uow: UnitOfWork, agent_id: int, *, url: str, events: Sequence[str], check_url: UrlCheck
) -> WebhookRecord:
    subscribed = check_events(events)
    await uow.release_connection()  # DNS may take seconds: hold no pooled connection meanwhile
    await check_url(url)  # before the transaction: no row lock waits on it either
    keyring = sealing.current()
    async with uow:
        webhook_id = await webhook_rows.reserve_id(uow.connection, agent_id)
        secret = new_secret()
        record = await webhook_rows.insert(
            uow.connection,
            webhook_id=webhook_id,
            agent_id=agent_id,
            url=url,
            events=subscribed,
            sealed_secret=keyring.seal(secret.encode(), sealing.webhook_context(webhook_id)),
            limit=rules.MAX_WEBHOOKS_PER_AGENT,
        )
        if record is None:
            raise rules.limit_reached()
        created = replace(record, secret=secret)
        await uow.commit(created)
    return created


async def owned(uow: UnitOfWork, agent_id: int, webhook_id: int) -> WebhookRecord:
    record = await webhook_rows.get(await uow.reader(), webhook_id)
    if record is None or record.agent_id != agent_id:
        raise rules.webhook_not_found(webhook_id)
    return record


async def list_for_agent(uow: UnitOfWork, agent_id: int, *, after_id: int, limit: int) -> list[WebhookRecord]:
    return await webhook_rows.for_agent(await uow.reader(), agent_id, after_id=after_id, limit=limit)


async def delete(uow: UnitOfWork, agent_id: int, webhook_id: int) -> None:
    async with uow:
        if not await webhook_rows.delete(uow.connection, webhook_id, agent_id):
            raise rules.webhook_not_found(webhook_id)
        await uow.commit(None)


@dataclass(frozen=True, slots=True)
class WebhookChanges:
    url: str | None = None
    events: Sequence[str] | None = None
    is_active: bool | None = None


async def update(
    uow: UnitOfWork, agent_id: int, webhook_id: int, changes: WebhookChanges, *, check_url: UrlCheck
) -> WebhookRecord:
    events = check_events(changes.events) if changes.events is not None else None
    if changes.url is not None:
        await uow.release_connection()
        await check_url(changes.url)
    async with uow:
        record = await webhook_rows.update(
            uow.connection, webhook_id, agent_id, url=changes.url, events=events, enable=changes.is_active
        )
        if record is None:
            raise rules.webhook_not_found(webhook_id)
        await uow.commit(record)
    return record


async def rotate_secret(uow: UnitOfWork, agent_id: int, webhook_id: int, *, overlap_seconds: int) -> WebhookRecord:
    secret = new_secret()
    sealed_secret = sealing.current().seal(secret.encode(), sealing.webhook_context(webhook_id))
    async with uow:
        record = await webhook_rows.rotate_secret(
            uow.connection, webhook_id, agent_id, sealed_secret=sealed_secret, overlap_seconds=overlap_seconds
        )
        if record is None:
            raise rules.webhook_not_found(webhook_id)
        rotated = replace(record, secret=secret)
        await uow.commit(rotated)
    return rotated


async def send_test(uow: UnitOfWork, agent_id: int, webhook_id: int) -> DeliveryRecord:
    """Queue a `webhook.ping` to this one endpoint; its delivery shows in the log like any other."""
    record = await owned(uow, agent_id, webhook_id)
    if not record.is_active:
        raise rules.webhook_disabled(webhook_id)
    async with uow:
        delivery_id = await event_rows.insert_ping(uow.connection, webhook_id, webhook_ping(webhook_id))
        delivery = must_exist(
            await webhook_rows.delivery(uow.connection, webhook_id, delivery_id), f"delivery {delivery_id}"
        )
        await uow.commit(delivery)
    return delivery


async def deliveries(
    uow: UnitOfWork,
    agent_id: int,
    webhook_id: int,
    *,
    before_id: int | None,
    limit: int,
    status: DeliveryStatus | None,
) -> list[DeliveryRecord]:
    await owned(uow, agent_id, webhook_id)
    return await webhook_rows.deliveries(
        await uow.reader(), webhook_id, before_id=before_id, limit=limit, status=status
    )


async def redeliver(uow: UnitOfWork, agent_id: int, webhook_id: int, delivery_id: int) -> DeliveryRecord:
    """Send a finished delivery again (same webhook-id, a fresh retry schedule)."""
    record = await owned(uow, agent_id, webhook_id)
    if not record.is_active:
        raise rules.webhook_disabled(webhook_id)
    async with uow:
        if not await webhook_rows.redeliver(uow.connection, webhook_id, delivery_id):
            existing = await webhook_rows.delivery(uow.connection, webhook_id, delivery_id)
            raise rules.delivery_not_found(delivery_id) if existing is None else rules.delivery_pending(delivery_id)
        delivery = must_exist(
            await webhook_rows.delivery(uow.connection, webhook_id, delivery_id), f"delivery {delivery_id}"
        )
        await uow.commit(delivery)
    return delivery
