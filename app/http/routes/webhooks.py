"""/api/v1/webhooks: an agent's webhook endpoints, their secrets, test pings, delivery log and redelivery."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request
from litestar.di import NamedDependency
from litestar.params import JSONBody
from msgspec import UNSET

from app.http.envelope import Envelope, Paged, meta, ok
from app.http.handlers import delete, get, patch, post
from app.http.pagination import DEFAULT_LIMIT, id_page
from app.http.params import Cursor, DeliveryId, DeliveryStatusFilter, Limit, WebhookId, parse_id
from app.http.respond import respond
from app.http.routes.docs import errors
from app.http.schemas.webhooks import (
    DeliveryOut,
    NoteMeta,
    RotateSecretIn,
    SecretRotatedOut,
    WebhookCreatedEnvelope,
    WebhookCreatedOut,
    WebhookDeletedOut,
    WebhookIn,
    WebhookOut,
    WebhookUpdateBody,
)
from app.http.security import agent_only
from app.outbound.webhook_client import WebhookClient
from app.services import webhooks
from app.services.auth import Principal
from app.services.uow import UnitOfWork
from app.services.webhooks import UrlCheck, WebhookChanges
from domain.deliveries import DeliveryStatus, WebhookRecord
from domain.error_codes import (
    DELIVERY_NOT_FOUND,
    DELIVERY_PENDING,
    LIMIT_REACHED,
    VALIDATION_ERROR,
    WEBHOOK_DISABLED,
    WEBHOOK_NOT_FOUND,
    WEBHOOK_URL_FORBIDDEN,
)
from domain.errors import InvalidParameter

OWNED = errors(WEBHOOK_NOT_FOUND)  # another agent's webhook is "not found" too


def url_check(request: Request[Any, Any, Any]) -> UrlCheck:
    """The SSRF guard for a URL that will receive deliveries (a webhook's, a task's callback)."""
    client: WebhookClient = request.app.state.webhook_client
    return client.check_url


def _webhook_id(value: str) -> int:
    return parse_id(value, "Webhook")


def delivery_status(value: str | None) -> DeliveryStatus | None:
    if value is None:
        return None
    try:
        return DeliveryStatus(value)
    except ValueError:
        valid = ", ".join(s.value for s in DeliveryStatus)
        raise InvalidParameter(f"Unknown delivery status {value!r}", f"Use one of: {valid}.") from None


class WebhooksController(Controller):
    path = "/api/v1/webhooks"
    tags = ["webhooks"]
    guards = [agent_only]
    security = [{"agentKey": []}]

    @post("", operation_id="createWebhook", status_code=201, responses=errors(WEBHOOK_URL_FORBIDDEN, LIMIT_REACHED))
    async def register(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[WebhookIn],
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
    ) -> WebhookCreatedEnvelope:
        """Register an endpoint for some event types (at most 5 per agent). The signing secret is shown once."""

        def answer(record: WebhookRecord) -> WebhookCreatedEnvelope:
            base = meta()
            note = "Store the secret now: it is not shown again. Verify each delivery's signature with it."
            return WebhookCreatedEnvelope(
                data=WebhookCreatedOut.of(record),
                meta=NoteMeta(timestamp=base.timestamp, request_id=base.request_id, note=note),
            )

        return await respond(
            uow,
            webhooks.register(
                uow, principal.require_agent_id(), url=data.url, events=data.events, check_url=url_check(request)
            ),
            answer,
        )

    @get("", operation_id="listWebhooks")
    async def list_webhooks(
        self,
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[WebhookOut]]:
        """Your endpoints, oldest first."""
        return await id_page(
            cursor,
            limit,
            lambda last, n: webhooks.list_for_agent(uow, principal.require_agent_id(), after_id=last or 0, limit=n),
            WebhookOut.of,
        )

    @get("/{webhook_id:str}", operation_id="getWebhook", responses=OWNED)
    async def get_webhook(
        self, webhook_id: WebhookId, principal: NamedDependency[Principal], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[WebhookOut]:
        """One of your endpoints, with its failure streak and whether it is active."""
        return ok(WebhookOut.of(await webhooks.owned(uow, principal.require_agent_id(), _webhook_id(webhook_id))))

    @patch(
        "/{webhook_id:str}", operation_id="updateWebhook", responses=errors(WEBHOOK_NOT_FOUND, WEBHOOK_URL_FORBIDDEN)
    )
    async def update_webhook(
        self,
        request: Request[Any, Any, Any],
        webhook_id: WebhookId,
        data: JSONBody[WebhookUpdateBody],
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
    ) -> Envelope[WebhookOut]:
        """Change the URL or events, or switch the endpoint on (`is_active: true`, after it was disabled) or off."""
        given = {name: value for name in data.__struct_fields__ if (value := getattr(data, name)) is not UNSET}
        if not given:
            raise VALIDATION_ERROR.error("No valid fields to update", "Send at least one of: url, events, is_active.")
        changes = WebhookChanges(**given)
        return await respond(
            uow,
            webhooks.update(
                uow, principal.require_agent_id(), _webhook_id(webhook_id), changes, check_url=url_check(request)
            ),
            lambda record: ok(WebhookOut.of(record)),
        )

    @delete("/{webhook_id:str}", operation_id="deleteWebhook", status_code=200, responses=OWNED)
    async def delete_webhook(
        self, webhook_id: WebhookId, principal: NamedDependency[Principal], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[WebhookDeletedOut]:
        """Delete an endpoint; deliveries still queued for it are dropped."""
        webhook = _webhook_id(webhook_id)
        return await respond(
            uow,
            webhooks.delete(uow, principal.require_agent_id(), webhook),
            lambda _: ok(WebhookDeletedOut(id=webhook)),
        )

    @post("/{webhook_id:str}/rotate-secret", operation_id="rotateWebhookSecret", status_code=200, responses=OWNED)
    async def rotate_secret(
        self,
        webhook_id: WebhookId,
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
        data: JSONBody[RotateSecretIn | None] = None,
    ) -> Envelope[SecretRotatedOut]:
        """A new signing secret (shown once). The old one keeps signing beside it for `overlap_seconds` (default a
        day; the body may be omitted)."""
        options = data or RotateSecretIn()
        return await respond(
            uow,
            webhooks.rotate_secret(
                uow, principal.require_agent_id(), _webhook_id(webhook_id), overlap_seconds=options.overlap_seconds
            ),
            lambda record: ok(
                SecretRotatedOut(
                    id=record.id,
                    secret=record.secret or "",
                    previous_secret_expires_at=record.previous_secret_expires_at,
                )
            ),
        )

    @post(
        "/{webhook_id:str}/test",
        operation_id="testWebhook",
        status_code=202,
        responses=errors(WEBHOOK_NOT_FOUND, WEBHOOK_DISABLED),
    )
    async def send_test(
        self, webhook_id: WebhookId, principal: NamedDependency[Principal], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[DeliveryOut]:
        """Queue a `webhook.ping` to this endpoint; follow it in the delivery log."""
        return await respond(
            uow,
            webhooks.send_test(uow, principal.require_agent_id(), _webhook_id(webhook_id)),
            lambda delivery: ok(DeliveryOut.of(delivery)),
        )

    @get("/{webhook_id:str}/deliveries", operation_id="listWebhookDeliveries", responses=OWNED)
    async def list_deliveries(
        self,
        webhook_id: WebhookId,
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
        status: DeliveryStatusFilter = None,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[DeliveryOut]]:
        """The endpoint's deliveries, newest first, each with every attempt (status, latency, response, error)."""
        webhook, wanted = _webhook_id(webhook_id), delivery_status(status)
        agent_id = principal.require_agent_id()
        return await id_page(
            cursor,
            limit,
            lambda before, n: webhooks.deliveries(uow, agent_id, webhook, before_id=before, limit=n, status=wanted),
            DeliveryOut.of,
        )

    @post(
        "/{webhook_id:str}/deliveries/{delivery_id:str}/redeliver",
        operation_id="redeliverWebhookDelivery",
        status_code=202,
        responses=errors(WEBHOOK_NOT_FOUND, WEBHOOK_DISABLED, DELIVERY_NOT_FOUND, DELIVERY_PENDING),
    )
    async def redeliver(
        self,
        webhook_id: WebhookId,
        delivery_id: DeliveryId,
        principal: NamedDependency[Principal],
        uow: NamedDependency[UnitOfWork],
    ) -> Envelope[DeliveryOut]:
        """Send a succeeded or failed delivery again, now: the same event and webhook-id, a new retry schedule."""
        return await respond(
            uow,
            webhooks.redeliver(
                uow, principal.require_agent_id(), _webhook_id(webhook_id), parse_id(delivery_id, "Delivery")
            ),
            lambda delivery: ok(DeliveryOut.of(delivery)),
        )
