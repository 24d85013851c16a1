"""Live event streams: one reader per process feeds every open stream from the outbox.

The hub reads new events once per wake-up (a NOTIFY after some commit, or the poll interval when notifications are
lost) and hands each to the streams it concerns. A stream first catches up from the outbox by its own position,
then takes events from its queue, skipping any it already sent: positions are totally ordered (see
`app.repo.events`), so the hand-over has no gap and no duplicate. A stream whose client reads too slowly has a
bounded queue; when it overflows the queue is dropped and the stream catches up from the outbox again, so a slow
or dead client costs bounded memory and loses nothing.

A shared match (`task.new_match`, one event for all the agents a task matches) comes from the hub's read with the
agents it reaches among those that had a stream open when the read began; a stream opened during that read is not
among them, so it catches up from the outbox again, where its own read resolves the match for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from app.cancellation import raise_if_cancelled, wait_for_event
from app.repo import events as event_rows
from app.repo.connections import Connection, ConnectionLease, ConnectionSource
from app.repo.events import StoredEvent
from app.repo.listen import listen_forever
from app.services import task_clock
from app.services.uow import UnitOfWork
from domain.errors import Conflict, InvalidParameter
from domain.tasks import TaskRecord

log = structlog.get_logger("agora.events")
T = TypeVar("T")

READ_BATCH = 500
#: When committed events wait behind a transaction still running, look again this soon (doubling up to the poll).
RECHECK_SECONDS = 0.01


class Subscription:
    """One open stream: an agent's events or a task's public ones, from a position on."""

    def __init__(
        self, hub: EventHub, *, owner: int, agent_id: int | None, task_id: int | None, position: tuple[int, int]
    ) -> None:
        self.hub = hub
        self.owner = owner  # the agent holding the stream
        self.agent_id = agent_id
        self.task_id = task_id
        self.position = position
        self._queue: deque[StoredEvent] = deque()
        self._arrived = asyncio.Event()
        self._overflowed = True  # start by catching up from the outbox
        self._closed = False
        self.unsubscribed = False

    def offer(self, event: StoredEvent) -> None:
        # Queued even while catching up: an event handed out after the catch-up's last read must not be lost.
        if len(self._queue) >= self.hub.queue_size:
            self._queue.clear()
            self._overflowed = True
        else:
            self._queue.append(event)
        self._arrived.set()

    def resync(self) -> None:
        """Catch up from the outbox again: the hub read events without knowing whether some concern this stream."""
        self._queue.clear()
        self._overflowed = True
        self._arrived.set()

    def close(self) -> None:
        """End the stream (the server is stopping); the client reconnects elsewhere with Last-Event-ID."""
        self._closed = True
        self._arrived.set()

    async def events(self, *, heartbeat_seconds: float) -> AsyncIterator[StoredEvent | None]:
        """Events in order, and None whenever `heartbeat_seconds` pass without one; ends when closed."""
        try:
            while not self._closed:
                if self._overflowed:
                    self._overflowed = False
                    async for event in self._catch_up():
                        yield event
                    continue
                if not self._queue:
                    self._arrived.clear()
                    if not await wait_for_event(self._arrived, heartbeat_seconds):
                        yield None
                    continue
                event = self._queue.popleft()
                if event.position > self.position:
                    self.position = event.position
                    yield event
        finally:
            self.hub.unsubscribe(self)

    async def _catch_up(self) -> AsyncIterator[StoredEvent]:
        while True:
            batch = await self.hub.read(self.position, agent_id=self.agent_id, task_id=self.task_id)
            for event in batch:
                self.position = event.position
                yield event
            if len(batch) < READ_BATCH:
                return


class EventHub:
    def __init__(
        self,
        source: ConnectionSource,
        *,
        listen_url: str | None,
        poll_seconds: float = 1.0,
        queue_size: int = 1000,
        max_streams_per_agent: int = 10,
    ) -> None:
        self.source = source
        self.max_streams_per_agent = max_streams_per_agent
        self._per_owner: Counter[int] = Counter()
        self.listen_url = listen_url
        self.poll_seconds = poll_seconds
        self.queue_size = queue_size
        self._position: tuple[int, int] | None = None  # None while no stream is open
        self._by_agent: dict[int, set[Subscription]] = defaultdict(set)
        self._by_task: dict[int, set[Subscription]] = defaultdict(set)
        self._wake = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="event-hub"))
        if self.listen_url:
            listener = listen_forever(self.listen_url, self._wake.set, name="agora-events")
            self._tasks.append(asyncio.create_task(listener, name="event-hub-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def subscribe(
        self,
        owner: int,
        *,
        agent_id: int | None = None,
        task_id: int | None = None,
        after: tuple[int, int] | None = None,
    ) -> Subscription:
        """A stream for agent `owner` from `after`, or from now when None."""
        if agent_id is None and task_id is None:
            raise ValueError("a stream follows an agent's events or a task's")
        if self._per_owner[owner] >= self.max_streams_per_agent:
            raise Conflict(
                f"At most {self.max_streams_per_agent} open event streams per agent",
                "Close a stream you no longer read, or follow several tasks through GET /api/v1/events.",
                code="TOO_MANY_STREAMS",
            )
        async with self._start_lock:
            if self._position is None:
                self._position = await self._with_connection(event_rows.head)
            # No await between reading the hub's position and registering: nothing can pass in between.
            subscription = Subscription(
                self,
                owner=owner,
                agent_id=agent_id,
                task_id=task_id,
                position=after if after is not None else self._position,
            )
            self._per_owner[owner] += 1
            if agent_id is not None:
                self._by_agent[agent_id].add(subscription)
            elif task_id is not None:
                self._by_task[task_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget the stream (again is harmless)."""
        if subscription.unsubscribed:
            return
        subscription.unsubscribed = True
        self._per_owner[subscription.owner] -= 1
        if self._per_owner[subscription.owner] <= 0:
            del self._per_owner[subscription.owner]
        if subscription.agent_id is not None:
            _forget(self._by_agent, subscription.agent_id, subscription)
        elif subscription.task_id is not None:
            _forget(self._by_task, subscription.task_id, subscription)
        if not self._by_agent and not self._by_task:
            self._position = None

    def close_streams(self) -> None:
        for subscribers in [*self._by_agent.values(), *self._by_task.values()]:
            for subscription in list(subscribers):
                subscription.close()

    @property
    def open_streams(self) -> int:
        return sum(len(s) for s in self._by_agent.values()) + sum(len(s) for s in self._by_task.values())

    async def read(
        self,
        position: tuple[int, int],
        *,
        agent_id: int | None,
        task_id: int | None,
        among: tuple[int, ...] = (),
    ) -> list[StoredEvent]:
        async def query(connection: Connection) -> list[StoredEvent]:
            return await event_rows.readable_after(
                connection, position, limit=READ_BATCH, agent_id=agent_id, task_id=task_id, among=among
            )

        return await self._with_connection(query)

    async def _with_connection(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        lease = ConnectionLease(self.source)
        try:
            return await work(await lease.connection())
        finally:
            await lease.release()

    async def _run(self) -> None:
        wait, recheck = self.poll_seconds, None
        while True:
            await wait_for_event(self._wake, wait)
            self._wake.clear()
            wait = self.poll_seconds
            if self._position is None:
                continue
            try:
                if await self._dispatch_new():
                    # Committed events wait behind a running transaction that may never NOTIFY: look again soon.
                    recheck = RECHECK_SECONDS if recheck is None else min(recheck * 2, self.poll_seconds)
                    wait = recheck
                else:
                    recheck = None
            except Exception as error:  # the database is away: streams wait, the next round retries
                raise_if_cancelled()
                log.warning("event_hub_read_failed", error=str(error))

    async def _dispatch_new(self) -> bool:
        """Hand out every readable event; True when committed events still wait behind a running transaction."""
        while self._position is not None:
            listening = tuple(self._by_agent)  # the agents whose matches this read resolves
            batch = await self.read(self._position, agent_id=None, task_id=None, among=listening)
            for event in batch:
                self._dispatch(event)
            if any(event.recipients is not None for event in batch):
                asked = set(listening)
                for agent_id, subscribers in list(self._by_agent.items()):
                    if agent_id not in asked:
                        for subscription in list(subscribers):
                            subscription.resync()
            if batch and self._position is not None:
                self._position = batch[-1].position
            if len(batch) < READ_BATCH:
                break
        position = self._position
        if position is None:
            return False
        return await self._with_connection(lambda c: event_rows.unreadable_exist(c, position))

    def _dispatch(self, event: StoredEvent) -> None:
        if event.recipients is not None:  # a shared match: to the agents it reaches, never a task's public stream
            for agent_id in event.recipients:
                for subscription in list(self._by_agent.get(agent_id, ())):
                    subscription.offer(event)
            return
        if event.agent_id is not None:
            subscribers = self._by_agent.get(event.agent_id)
        elif event.task_id is not None:
            subscribers = self._by_task.get(event.task_id)
        else:
            return
        for subscription in list(subscribers or ()):
            subscription.offer(event)


def _forget(index: dict[int, set[Subscription]], key: int, subscription: Subscription) -> None:
    subscribers = index.get(key)
    if subscribers is not None:
        subscribers.discard(subscription)
        if not subscribers:
            del index[key]


def _event_id(last_event_id: str) -> int:
    if not (last_event_id.isascii() and last_event_id.isdigit()) or len(last_event_id) > 18:
        raise InvalidParameter(
            f"Last-Event-ID must be an event id, got {last_event_id!r}",
            "Send back the id: of the last event you received, or omit it to start from now.",
        )
    return int(last_event_id)


async def resume_position(uow: UnitOfWork, header: str | None, query: str | None = None) -> tuple[int, int] | None:
    """The position after which a stream resumes: the event named by the Last-Event-ID header, else by the
    last_event_id query parameter ("0": the very beginning). The header wins, as an EventSource reconnecting sends
    it with the URL it first opened; a query value is still checked, so a malformed one is never ignored."""
    if query:
        _event_id(query)
    last_event_id = header or query
    if not last_event_id:
        return None
    event_id = _event_id(last_event_id)
    if event_id == 0:
        return event_rows.ORIGIN
    connection = await uow.reader()
    position = await event_rows.position_of(connection, event_id)
    if position is None:
        if event_id <= await event_rows.newest_id(connection):
            raise InvalidParameter(
                f"Event {event_id} is no longer kept (events are kept for a limited number of days)",
                "Reconnect without Last-Event-ID and re-read current state (GET /agents/me/tasks, /claims).",
                code="EVENT_EXPIRED",
            )
        raise InvalidParameter(
            f"Last-Event-ID {event_id} is not a known event",
            "Send back the id: of the last event you received, or omit it to start from now.",
        )
    return position


async def delete_expired_events(source: ConnectionSource, *, keep_days: int) -> int:
    """Forget events older than `keep_days` (any process may run it; deletes are idempotent)."""
    lease = ConnectionLease(source)
    removed = 0
    try:
        connection = await lease.connection()
        while batch := await event_rows.delete_expired(connection, keep_days=keep_days):
            removed += batch
    finally:
        await lease.release()
    return removed


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    task: TaskRecord
    latest: StoredEvent | None  # the task's last public event: the snapshot stands for it


async def task_snapshot(uow: UnitOfWork, task_id: int) -> TaskSnapshot:
    task = await task_clock.current(uow, task_id)
    return TaskSnapshot(task, await event_rows.latest_public(await uow.reader(), task_id))
