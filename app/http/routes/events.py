"""Event streams (Server-Sent Events): GET /api/v1/events (the caller's) and GET /api/v1/tasks/{task_id}/events
(one task's public status changes).

Both resume after the event named by the Last-Event-ID header (or the last_event_id query parameter, for clients
that cannot set headers) with no gap and no duplicate. The request's database connection is given back before the
stream starts: an open stream holds no connection, only a place in the process's event hub.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example, SecurityRequirement
from litestar.response import Stream

from app.http import context, sse
from app.http.handlers import get
from app.http.params import LastEventIdHeader, LastEventIdQuery, TaskId, parse_id
from app.http.routes.docs import errors
from app.http.schemas.events import StreamEventOut
from app.http.security import agent_only
from app.services import event_stream
from app.services.auth import Principal
from app.services.event_stream import EventHub, Subscription
from app.services.uow import UnitOfWork
from domain.error_codes import EVENT_EXPIRED, SERVICE_UNAVAILABLE, TASK_NOT_FOUND, TOO_MANY_STREAMS

AGENT_KEY: list[SecurityRequirement] = [{"agentKey": []}]
_STREAM_DOC = {
    200: ResponseSpec(
        data_container=StreamEventOut,  # each event, parsed into its fields
        media_type="text/event-stream",
        description="An endless stream of events: `id:`, `event:` and a JSON `data:` line each; `: heartbeat` comments",
        generate_examples=False,
        examples=[
            Example(
                summary="The retry hint, then a status change",
                value=(
                    "retry: 3000\n\n"
                    "id: 5501\nevent: task.status\n"
                    'data: {"type":"task.status","event_id":5501,"data":{"task_id":42,"status":"claimed",'
                    '"claimed_by_agent_id":12},"timestamp":"2026-05-04T12:30:00Z"}\n\n'
                    ": heartbeat\n\n"
                ),
            )
        ],
    )
}
# Every stream can be refused: too many open, resumed from a forgotten event, or not served by this process.
STREAM_ERRORS = (TOO_MANY_STREAMS, EVENT_EXPIRED, SERVICE_UNAVAILABLE)


def _hub(request: Request[Any, Any, Any]) -> EventHub:
    hub: EventHub | None = request.app.state.get("event_hub")
    if hub is None:
        raise SERVICE_UNAVAILABLE.error(
            "Event streams are not running in this process", "Retry in a few seconds; another process may serve it."
        )
    return hub


async def _frames(subscription: Subscription, first: list[bytes], heartbeat: float) -> AsyncIterator[bytes]:
    try:
        yield sse.RETRY
        for frame in first:
            yield frame
        async for event in subscription.events(heartbeat_seconds=heartbeat):
            yield sse.HEARTBEAT if event is None else sse.event_frame(event)
    finally:  # also when the client left before the first event
        subscription.hub.unsubscribe(subscription)


def _stream(request: Request[Any, Any, Any], subscription: Subscription, first: list[bytes]) -> Stream:
    heartbeat = request.app.state.settings.sse_heartbeat_seconds
    return Stream(_frames(subscription, first, heartbeat), media_type="text/event-stream", headers=sse.HEADERS)


class EventsController(Controller):
    path = "/api/v1"
    tags = ["events"]

    @get(
        "/events",
        operation_id="streamMyEvents",
        guards=[agent_only],
        security=AGENT_KEY,
        responses={**_STREAM_DOC, **errors(*STREAM_ERRORS)},
    )
    async def my_events(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
        last_event_id: LastEventIdQuery = None,
        last_event_id_header: LastEventIdHeader = None,
    ) -> Stream:
        """The calling agent's events as they commit: its tasks' status changes, bids, deliveries, credits."""
        hub = _hub(request)
        after = await event_stream.resume_position(uow, last_event_id_header, last_event_id)
        await context.current().lease.release()
        agent_id = principal.require_agent_id()
        subscription = await hub.subscribe(agent_id, agent_id=agent_id, after=after)
        greeting = {"agent_id": agent_id, "message": "Subscribed to task updates"}
        return _stream(request, subscription, [sse.plain_frame("connected", greeting)])

    @get(
        "/tasks/{task_id:str}/events",
        operation_id="streamTaskEvents",
        guards=[agent_only],
        security=AGENT_KEY,
        responses={**_STREAM_DOC, **errors(TASK_NOT_FOUND, *STREAM_ERRORS)},
    )
    async def task_events(
        self,
        request: Request[Any, Any, Any],
        task_id: TaskId,
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
        last_event_id: LastEventIdQuery = None,
        last_event_id_header: LastEventIdHeader = None,
    ) -> Stream:
        """One task's status changes. Without Last-Event-ID it starts with the task's current state."""
        hub = _hub(request)
        task = parse_id(task_id, "Task")
        after = await event_stream.resume_position(uow, last_event_id_header, last_event_id)
        snapshot = await event_stream.task_snapshot(uow, task)
        await context.current().lease.release()
        first: list[bytes] = []
        if after is None:
            latest = snapshot.latest
            after = latest.position if latest else None
            current = {
                "task_id": snapshot.task.id,
                "status": snapshot.task.status.value,
                "claimed_by_agent_id": snapshot.task.claimed_by_agent_id,
                "updated_at": (latest.created_at if latest else snapshot.task.created_at).isoformat(),
            }
            frame = {"type": "task.status", "data": current, "timestamp": datetime.now(UTC).isoformat()}
            first.append(sse.plain_frame("task.status", frame, event_id=latest.id if latest else None))
        subscription = await hub.subscribe(principal.require_agent_id(), task_id=task, after=after)
        return _stream(request, subscription, first)
