"""create_app(settings): the one place where Agora is wired together."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import cast

import structlog
from litestar import Litestar
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.types import HTTPScope, LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from app.cancellation import raise_if_cancelled
from app.config import Settings, load_settings
from app.crypto import KeyRing
from app.http import methods
from app.http.errors import EXCEPTION_HANDLERS
from app.http.lifecycle import handle_http
from app.http.openapi import OPENAPI
from app.http.request import StrictJSONRequest, before_request
from app.http.routes.admin import AdminController
from app.http.routes.agents import AgentsController
from app.http.routes.board import BoardController
from app.http.routes.callbacks import CallbacksController
from app.http.routes.claims import ClaimsController
from app.http.routes.comments import CommentsController
from app.http.routes.deliverables import DeliverablesController
from app.http.routes.events import EventsController
from app.http.routes.health import HealthController
from app.http.routes.operator import OperatorController
from app.http.routes.tasks import TasksController
from app.http.routes.webhooks import WebhooksController
from app.http.security import DEPENDENCIES
from app.logging import configure_logging
from app.outbound.webhook_client import WebhookClient
from app.repo import migrate
from app.repo.connections import ConnectionLease, ConnectionSource, PoolSource, open_pool
from app.repo.database import load_keyring, resolve_database_url
from app.services import auth, event_stream, idempotency, sealing
from app.services.event_stream import EventHub
from app.services.uow import CommitObserver
from app.workers import task_sweeper
from app.workers.webhook_dispatcher import DeliveryWorker
from domain.webhooks import parse_allow_cidrs

log = structlog.get_logger("agora")

SWEEP_SECONDS = 600


class AgoraApp(Litestar):
    """Litestar, with Agora's request lifecycle around every HTTP request (404s and 405s included), and HEAD and
    OPTIONS answered from the routes (app.http.methods)."""

    _allow: dict[str, str] | None = None

    async def __call__(
        self, scope: Scope | LifeSpanScope, receive: Receive | LifeSpanReceive, send: Send | LifeSpanSend
    ) -> None:
        if scope["type"] != ScopeType.HTTP:  # a str enum: equal to the "http" the server sends
            await super().__call__(scope, receive, send)
            return
        # ASGI pairs an http scope with http's receive and send; Litestar's parameters are each a union of kinds,
        # which cannot say that they come together (its own __call__ ignores the error these casts avoid).
        http_scope, http_receive, http_send = cast(HTTPScope, scope), cast(Receive, receive), cast(Send, send)
        # Services seal and open secrets with the ring bound here (app.services.sealing), for the whole request.
        with sealing.bound(self.state.keyring):
            await handle_http(self._dispatch, self.state.source, http_scope, http_receive, http_send)

    async def _dispatch(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        if self._allow is None:
            self._allow = methods.allow_table(self)  # the routes are final once the app serves
        await methods.dispatch(super().__call__, self, self._allow, scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    source: ConnectionSource | None = None,
    commit_observer: CommitObserver | None = None,
) -> Litestar:
    """Build the application. Tests pass `source` (one connection to a test's own database); otherwise the
    lifespan opens a pool on the configured or embedded database. `commit_observer` is the crash tests' seam (see
    app.services.uow.CommitObserver); production passes none."""
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        if source is not None:  # tests: the source is in the initial state (and a test may swap it)
            yield
            return
        if app.state.keyring.empty:  # no AGORA_SECRET_KEY: the data folder's key file, or refuse to start
            app.state.keyring = await asyncio.to_thread(load_keyring, settings)
        url = await asyncio.to_thread(resolve_database_url, settings)
        pool = open_pool(
            url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            name="agora-api",
        )
        await pool.open(wait=True, timeout=30)
        app.state.source = PoolSource(pool)
        sweeper = asyncio.create_task(_sweep_expired(app.state.source, settings))
        task_clock = asyncio.create_task(task_sweeper.run(app.state.source, settings.task_sweep_seconds))
        hub = EventHub(
            app.state.source,
            listen_url=url,
            poll_seconds=settings.events_poll_seconds,
            queue_size=settings.sse_queue_size,
            max_streams_per_agent=settings.sse_max_streams_per_agent,
        )
        await hub.start()
        app.state.event_hub = hub
        _close_streams_on_signal(hub)
        worker = None
        if settings.webhook_worker:
            worker = DeliveryWorker(
                app.state.source, app.state.webhook_client, settings, listen_url=url, keyring=app.state.keyring
            )
            await worker.start()
        log.info("started", database="configured" if settings.database_url else "embedded", webhook_worker=bool(worker))
        try:
            yield
        finally:
            for loop_task in (sweeper, task_clock):
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
            if worker is not None:
                await worker.stop()
            await hub.stop()
            await pool.close()
            log.info("stopped")

    @contextlib.asynccontextmanager
    async def outbound(app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await app.state.webhook_client.aclose()

    return AgoraApp(
        route_handlers=[
            HealthController,
            AgentsController,
            BoardController,
            OperatorController,
            AdminController,
            TasksController,
            ClaimsController,
            DeliverablesController,
            CommentsController,
            EventsController,
            WebhooksController,
            CallbacksController,
        ],
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[outbound, database],
        openapi_config=OPENAPI,
        request_max_body_size=settings.max_body_bytes,
        request_class=StrictJSONRequest,
        before_request=before_request,
        state=_initial_state(settings, source, commit_observer),
        debug=False,
        logging_config=None,
    )


def _initial_state(
    settings: Settings, source: ConnectionSource | None, commit_observer: CommitObserver | None
) -> State:
    return State(
        {
            "settings": settings,
            "source": source,
            "commit_observer": commit_observer,
            "event_hub": None,
            "webhook_client": webhook_client(settings),
            # Empty when the settings carry no key: the lifespan then loads the data folder's (or refuses).
            "keyring": KeyRing.parse(settings.secret_key),
            "expected_revision": migrate.head_revision(),
        }
    )


def webhook_client(settings: Settings) -> WebhookClient:
    return WebhookClient(
        allow=parse_allow_cidrs(settings.webhook_allow_cidrs),
        timeout=settings.webhook_timeout_seconds,
        max_response_bytes=settings.webhook_max_response_bytes,
    )


async def _sweep_expired(source: ConnectionSource, settings: Settings) -> None:
    """Delete expired idempotency records, idle rate-limit rows and old events now and then; any process may do it,
    deletes are idempotent."""

    async def idempotency_keys() -> int:
        lease = ConnectionLease(source)
        try:
            return await idempotency.delete_expired(await lease.connection())
        finally:
            await lease.release()

    async def rate_limit_rows() -> int:
        lease = ConnectionLease(source)
        try:
            return await auth.forget_idle_callers(lease)
        finally:
            await lease.release()

    async def events() -> int:
        return await event_stream.delete_expired_events(source, keep_days=settings.events_retention_days)

    sweeps = {"idempotency_keys": idempotency_keys, "rate_limit_rows": rate_limit_rows, "events": events}
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        for name, sweep in sweeps.items():
            try:
                removed = await sweep()
                if removed:
                    log.info("swept", what=name, removed=removed)
            except Exception as exc:
                raise_if_cancelled()
                log.warning("sweep_failed", what=name, error=str(exc))


def _close_streams_on_signal(hub: EventHub) -> None:
    """End open event streams as soon as the server is told to stop. The server waits for open responses before
    it shuts the application down, and an event stream never ends by itself: without this a stop would always
    take the whole graceful-shutdown timeout. The server's own handler (installed before ours) still runs."""
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(stop_signal)

        def handler(number: int, frame: object, previous: object = previous) -> None:
            loop.call_soon_threadsafe(hub.close_streams)
            if callable(previous):
                previous(number, frame)

        try:
            signal.signal(stop_signal, handler)
        except ValueError:  # not the main thread (an embedding server): streams end on the server's timeout
            return


def app_from_environment() -> Litestar:
    """The factory uvicorn workers call (`agora serve`): settings from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
