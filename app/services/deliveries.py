"""Webhook delivery use cases for the delivery worker: claim due deliveries, record an attempt's outcome."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from app.repo import deliveries as delivery_rows
from app.repo.connections import ConnectionLease, ConnectionSource
from app.repo.deliveries import AttemptReport, DueDelivery
from app.services.uow import UnitOfWork
from domain import events
from domain.deliveries import AttemptVerdict, DisablePolicy, judge_attempt

#: Shared matches fanned out into deliveries per claim (each may reach hundreds of agents).
FAN_OUT_BATCH = 100


@dataclass(frozen=True, slots=True)
class Claimed:
    deliveries: list[DueDelivery]
    more_matches: bool  # the fan-out took a full batch: more matches may wait, claim again soon


async def claim_due(
    source: ConnectionSource,
    *,
    limit: int,
    per_endpoint: int,
    running: Mapping[int, int],
    lease_seconds: float,
    fan_out: int = FAN_OUT_BATCH,
) -> Claimed:
    """Fan the next shared matches out into deliveries, then claim what is due (those included), in one
    transaction: a crash before its commit leaves the matches for the next claim, and none is fanned out twice."""
    # The claim's commit is durable: the worker sends what it claimed, and a claim an immediate crash forgot (when
    # pool statements committed asynchronously) was claimed again and sent twice under one attempt number, so the
    # log listed fewer attempts than the receiver saw (the chaos soak's finding).
    lease = ConnectionLease(source)
    uow = UnitOfWork(lease)
    try:
        async with uow:
            matches, _ = await delivery_rows.fan_out_matches(uow.connection, limit=fan_out)
            claimed = await delivery_rows.claim_due(
                uow.connection,
                limit=limit,
                per_endpoint=per_endpoint,
                running=running,
                lease_seconds=lease_seconds,
            )
            await uow.commit()
        return Claimed(claimed, more_matches=matches >= fan_out)
    finally:
        await lease.release()


async def next_due_in(source: ConnectionSource) -> float | None:
    lease = ConnectionLease(source)
    try:
        return await delivery_rows.next_due_in(await lease.connection())
    finally:
        await lease.release()


async def finish_attempt(
    source: ConnectionSource,
    delivery: DueDelivery,
    report: AttemptReport,
    *,
    succeeded: bool,
    retry_after_seconds: float | None,
    policy: DisablePolicy,
    scale: float,
    rng: random.Random | None = None,
    endpoint_at_fault: bool = True,
) -> AttemptVerdict | None:
    """Record the attempt and decide what follows, under the endpoint's row lock (so two attempts ending together
    count the streak right and switch the endpoint off once). None when the endpoint was deleted meanwhile."""
    lease = ConnectionLease(source)
    uow = UnitOfWork(lease)
    try:
        async with uow:
            health = await delivery_rows.lock_endpoint(uow.connection, delivery.webhook_id)
            if health is None:
                return None
            verdict = judge_attempt(
                succeeded=succeeded,
                response_status=report.response_status,
                retry_after_seconds=retry_after_seconds,
                attempts_in_round=delivery.attempts_in_round,
                health=health,
                policy=policy,
                scale=scale,
                rng=rng,
                endpoint_at_fault=endpoint_at_fault,
            )
            await delivery_rows.record_attempt(uow.connection, delivery, report, verdict)
            if verdict.disable_reason is not None and health.is_active:
                disabled = await delivery_rows.disable_endpoint(
                    uow.connection, delivery.webhook_id, verdict.disable_reason
                )
                await uow.publish(
                    events.webhook_disabled(
                        owner_agent_id=disabled.owner_agent_id,
                        webhook_id=delivery.webhook_id,
                        url=delivery.url,
                        reason=verdict.disable_reason,
                        task_id=disabled.task_id,
                        metadata=disabled.task_metadata,
                    )
                )
            await uow.commit()
        return verdict
    finally:
        await lease.release()
