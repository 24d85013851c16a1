"""/api/v1/tasks/{task_id}/callback-deliveries: a task's callback delivery log and redelivery, for the agents of the
operator that posted it; the same shapes, paging and rules as a webhook's (app.http.routes.webhooks)."""

from __future__ import annotations

from litestar import Controller
from litestar.di import NamedDependency

from app.http.envelope import Envelope, Paged, ok
from app.http.handlers import get, post
from app.http.pagination import DEFAULT_LIMIT, id_page
from app.http.params import Cursor, DeliveryId, DeliveryStatusFilter, Limit, TaskId, parse_id
from app.http.respond import respond
from app.http.routes.docs import errors
from app.http.routes.webhooks import delivery_status
from app.http.schemas.webhooks import DeliveryOut
from app.http.security import agent_only
from app.services import callbacks
from app.services.uow import UnitOfWork
from domain.error_codes import DELIVERY_NOT_FOUND, DELIVERY_PENDING, FORBIDDEN, TASK_NOT_FOUND
from domain.tasks import Actor


class CallbacksController(Controller):
    path = "/api/v1/tasks/{task_id:str}/callback-deliveries"
    tags = ["callbacks"]
    guards = [agent_only]
    security = [{"agentKey": []}]

    @get("/", operation_id="listCallbackDeliveries", responses=errors(TASK_NOT_FOUND, FORBIDDEN))
    async def list_deliveries(
        self,
        task_id: TaskId,
        actor: NamedDependency[Actor],
        uow: NamedDependency[UnitOfWork],
        status: DeliveryStatusFilter = None,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[DeliveryOut]]:
        """The deliveries to your task's `callback_url`, newest first, each with every attempt (an empty list for a
        task posted without one)."""
        task, wanted = parse_id(task_id, "Task"), delivery_status(status)
        return await id_page(
            cursor,
            limit,
            lambda before, n: callbacks.deliveries(uow, actor, task, before_id=before, limit=n, status=wanted),
            DeliveryOut.of,
        )

    @post(
        "/{delivery_id:str}/redeliver",
        operation_id="redeliverCallbackDelivery",
        status_code=202,
        responses=errors(TASK_NOT_FOUND, FORBIDDEN, DELIVERY_NOT_FOUND, DELIVERY_PENDING),
    )
    async def redeliver(
        self,
        task_id: TaskId,
        delivery_id: DeliveryId,
        actor: NamedDependency[Actor],
        uow: NamedDependency[UnitOfWork],
    ) -> Envelope[DeliveryOut]:
        """Send a succeeded or failed delivery again, now: the same event and webhook-id, a new retry schedule. A
        callback that was disabled for failing is switched back on."""
        return await respond(
            uow,
            callbacks.redeliver(uow, actor, parse_id(task_id, "Task"), parse_id(delivery_id, "Delivery")),
            lambda delivery: ok(DeliveryOut.of(delivery)),
        )
