"""The webhook delivery worker: claims due deliveries, sends each signed, records every attempt.

Several workers (threads of `agora serve` processes and `agora worker` processes) share the queue safely: claims
skip rows another holds and carry a lease. Each delivery runs as its own task with a slot of `concurrency`, and at
most `per_endpoint` of one endpoint's deliveries run at once in this worker, so a slow endpoint delays only itself.
The worker wakes on the outbox's NOTIFY, when the next retry falls due, or on its poll interval. Each claim first
fans the shared `task.new_match` events committed since the last one out into their deliveries (see
app.repo.deliveries), in the claim's transaction.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
import structlog

from app.cancellation import raise_if_cancelled, wait_for_event
from app.config import Settings
from app.crypto import KeyRing, SealError
from app.outbound.webhook_client import AttemptOutcome, SendResult, WebhookClient
from app.repo.connections import ConnectionSource
from app.repo.deliveries import AttemptReport, DueDelivery
from app.repo.listen import listen_forever
from app.services import deliveries, sealing
from domain.deliveries import DisablePolicy
from domain.webhooks import parse_retry_after, standard_signature, taskhive_signature

log = structlog.get_logger("agora.webhooks")

#: How long a claimed delivery stays ours beyond the request timeout before another worker may take it over.
LEASE_MARGIN_SECONDS = 5.0
IDLE_CLAIM_INTERVAL_SECONDS = 0.02
#: How long beyond the request timeout a stopping worker waits for its attempts in flight to be recorded.
STOP_GRACE_SECONDS = 1.0


class _Body(msgspec.Struct):
    """TaskHive's delivery body {"event", "timestamp", "data"}, plus the event's id for deduplication."""

    event: str
    event_id: int
    timestamp: datetime
    data: msgspec.Raw


_encode = msgspec.json.Encoder().encode


def delivery_body(delivery: DueDelivery) -> bytes:
    """The same bytes on every attempt (the signature covers them, and receivers may compare)."""
    return _encode(
        _Body(delivery.event_type, delivery.event_id, delivery.event_created_at, msgspec.Raw(delivery.event_data))
    )


def signed_headers(delivery: DueDelivery, body: bytes, now: int, secrets: Sequence[str]) -> dict[str, str]:
    """`secrets`: the delivery's, opened (the current one first)."""
    message_id = f"evt_{delivery.event_id}"  # the same on every retry and redelivery: the receiver's dedupe key
    return {
        "X-TaskHive-Signature": taskhive_signature(secrets[0], body),
        "X-TaskHive-Event": delivery.event_type,
        "X-TaskHive-Delivery": f"whd_{delivery.id}",
        "X-TaskHive-Timestamp": str(now),
        "webhook-id": message_id,
        "webhook-timestamp": str(now),
        "webhook-signature": standard_signature(secrets, message_id, now, body),
    }


class DeliveryWorker:
    def __init__(
        self,
        source: ConnectionSource,
        client: WebhookClient,
        settings: Settings,
        *,
        listen_url: str | None = None,
        rng: random.Random | None = None,
        keyring: KeyRing | None = None,
    ) -> None:
        self.source = source
        self.client = client
        self.settings = settings
        # Opens the endpoints' secrets to sign with; by default the ring in the settings (AGORA_SECRET_KEY).
        self.keyring = keyring if keyring is not None else KeyRing.parse(settings.secret_key)
        self.listen_url = listen_url
        self.rng = rng
        self.policy = DisablePolicy(settings.webhook_disable_after_failures, settings.webhook_disable_after_seconds)
        self.lease_seconds = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        self._in_flight: set[asyncio.Task[None]] = set()
        self._per_endpoint: Counter[int] = Counter()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="webhook-worker"))
        if self.listen_url:
            listener = listen_forever(self.listen_url, self._wake.set, name="agora-webhooks")
            self._tasks.append(asyncio.create_task(listener, name="webhook-worker-listen"))

    async def stop(self) -> None:
        """Stop claiming, then let the deliveries in flight end and record their attempt (each is bounded by the
        request timeout); any still running after that is cancelled, its attempt shown as interrupted and the
        delivery sent again when its lease ends. Without the wait a SIGTERM would leave every attempt in flight
        unrecorded, and send it twice."""
        for task in self._tasks:
            task.cancel()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.settings.webhook_timeout_seconds + STOP_GRACE_SECONDS)
        for task in self._in_flight:
            task.cancel()
        for task in [*self._tasks, *self._in_flight]:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as error:  # stopping must go on: the pool and client still have to close
                log.warning("webhook_worker_task_failed", error=repr(error))
        self._tasks.clear()

    async def run_once(self) -> int:
        """Claim what is due now and send it all; returns how many were sent (for tests and `agora worker --once`)."""
        started = await self._claim_and_send()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        return started

    async def _run(self) -> None:
        while True:
            try:
                claimed = await self._claim_and_send()
                timeout = await self._idle_timeout()
            except Exception as error:  # the database is away: wait and try again
                raise_if_cancelled()
                log.warning("webhook_worker_failed", error=str(error))
                claimed, timeout = 0, self.settings.events_poll_seconds
            if not claimed:
                # Every commit wakes us (the NOTIFY), most with nothing to deliver: under a busy API, claim at
                # most this often instead of once per commit.
                await asyncio.sleep(IDLE_CLAIM_INTERVAL_SECONDS)
            await self._wait(max(timeout - IDLE_CLAIM_INTERVAL_SECONDS, 0.0) if not claimed else timeout)

    async def _claim_and_send(self) -> int:
        free = self.settings.webhook_concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        claimed = await deliveries.claim_due(
            self.source,
            limit=free,
            per_endpoint=self.settings.webhook_per_endpoint_concurrency,
            running=dict(self._per_endpoint),
            lease_seconds=self.lease_seconds,
        )
        if claimed.more_matches:
            self._wake.set()  # a backlog of matches to fan out: claim again right away
        due = claimed.deliveries
        for delivery in due:
            self._per_endpoint[delivery.webhook_id] += 1
            task = asyncio.create_task(self._deliver(delivery))
            self._in_flight.add(task)
            task.add_done_callback(functools.partial(self._done, webhook_id=delivery.webhook_id))
        return len(due)

    def _done(self, task: asyncio.Task[None], webhook_id: int) -> None:
        self._in_flight.discard(task)
        self._per_endpoint[webhook_id] -= 1
        if self._per_endpoint[webhook_id] <= 0:
            del self._per_endpoint[webhook_id]
        self._wake.set()  # a slot is free

    async def _idle_timeout(self) -> float:
        poll = self.settings.events_poll_seconds
        if len(self._in_flight) >= self.settings.webhook_concurrency:
            return poll  # a finishing delivery wakes us
        due_in = await deliveries.next_due_in(self.source)
        return poll if due_in is None else min(poll, max(due_in, 0.001))

    async def _wait(self, seconds: float) -> None:
        await wait_for_event(self._wake, seconds)
        self._wake.clear()

    async def _deliver(self, delivery: DueDelivery) -> None:
        try:
            secrets = self._open_secrets(delivery)
        except SealError as error:
            # A key missing from this worker's ring: nothing can be signed, so nothing is sent. The attempt is
            # logged as failed, saying why, and retried on the schedule (a fixed ring then delivers it); the
            # endpoint is not held responsible.
            log.error(
                "webhook_secret_unreadable", delivery_id=delivery.id, webhook_id=delivery.webhook_id, error=str(error)
            )
            result = SendResult(
                outcome=AttemptOutcome.FAILED,
                status=None,
                duration_ms=0,
                snippet=None,
                error=f"not sent: the signing secret cannot be opened with this worker's data keys ({error})",
                retry_after=None,
            )
            sent = False
        else:
            body = delivery_body(delivery)
            headers = signed_headers(delivery, body, int(time.time()), secrets)
            result = await self.client.post(delivery.url, body, headers)
            sent = True
        report = AttemptReport(
            duration_ms=result.duration_ms,
            outcome=result.outcome.value,
            response_status=result.status,
            response_snippet=result.snippet,
            error=result.error,
        )
        try:
            verdict = await deliveries.finish_attempt(
                self.source,
                delivery,
                report,
                succeeded=result.outcome is AttemptOutcome.SUCCEEDED,
                retry_after_seconds=_retry_after(result),
                policy=self.policy,
                scale=self.settings.webhook_retry_scale,
                rng=self.rng,
                endpoint_at_fault=sent,
            )
        except Exception as error:
            # Not recorded: the log shows the attempt (written at the claim) as interrupted once the lease runs out,
            # and the delivery is attempted again.
            log.warning("webhook_attempt_not_recorded", delivery_id=delivery.id, error=str(error))
            return
        log.info(
            "webhook_attempt",
            delivery_id=delivery.id,
            webhook_id=delivery.webhook_id,
            event_type=delivery.event_type,
            attempt=delivery.attempt_number,
            outcome=result.outcome.value,
            status=result.status,
            duration_ms=result.duration_ms,
            next=verdict.status.value if verdict else "endpoint deleted",
            disabled=verdict.disable_reason if verdict else None,
        )

    def _open_secrets(self, delivery: DueDelivery) -> tuple[str, ...]:
        context = sealing.webhook_context(delivery.webhook_id)
        return tuple(self.keyring.open(sealed, context).decode() for sealed in delivery.sealed_secrets)


def _retry_after(result: SendResult) -> float | None:
    return parse_retry_after(result.retry_after, datetime.now(UTC)) if result.status == 429 else None


async def run_standalone(settings: Settings, url: str, client: WebhookClient, *, once: bool = False) -> None:
    """`agora worker`: a delivery worker of its own (no HTTP), until SIGTERM or SIGINT."""
    import signal

    from app.repo.connections import PoolSource, open_pool

    pool = open_pool(
        url,
        min_size=1,
        max_size=max(4, settings.webhook_concurrency // 4),
        statement_timeout_ms=settings.db_statement_timeout_ms,
        name="agora-worker",
    )
    await pool.open(wait=True, timeout=30)
    worker = DeliveryWorker(PoolSource(pool), client, settings, listen_url=url)
    try:
        if once:
            sent = await worker.run_once()
            log.info("webhook_worker_once", sent=sent)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop_signal, stop.set)
        await worker.start()
        log.info("webhook_worker_started", concurrency=settings.webhook_concurrency)
        await stop.wait()
    finally:
        await worker.stop()
        await client.aclose()
        await pool.close()
        log.info("webhook_worker_stopped")
