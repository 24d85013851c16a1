"""After quiescence: what the receiver got against what the database committed and what the delivery log says.

- Every delivery the outbox wrote for the soak's webhooks (one per committed event and subscribed endpoint, in the
  event's own transaction) reached the receiver with a 2xx at least once, and the outbox wrote one for every event
  an endpoint subscribed to once its creation had been answered.
- Nothing the receiver got is unknown to the database: each webhook-id names a committed event, with the same type
  and data, and the X-TaskHive-Delivery its delivery. Every request verifies with the official Standard Webhooks
  verifier (at the moment it arrived) and TaskHive's signature.
- The delivery log (GET /webhooks/{id}/deliveries, issue 19's contract): a delivery's attempts are numbered 1..n,
  none left in progress, and they are the requests the receiver saw, in order (a success a 2xx it answered, a
  failure the status it answered, a timeout any request), except that an `interrupted` attempt, or one that timed
  out before any answer, may or may not have reached it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.chaos.history import Client
from tests.chaos.workload import Workload
from tests.webhook_receiver import Received

TOLERANCE = timedelta(minutes=5)  # Standard Webhooks' (and the verifier's)
FRESH_SECONDS = 5  # a signature's timestamp is this attempt's: within seconds of its arrival
#: When the checker's own reads were answered 503 (PostgreSQL long back by then: a dead pooled connection).
CHECKER_503: list[float] = []


class VerifierAt(Webhook):
    """The official verifier, checking the timestamp against when the request arrived instead of now (a long soak
    checks signatures more than five minutes after the first deliveries)."""

    def __init__(self, secret: str, arrived: float) -> None:
        super().__init__(secret)
        self.arrived = datetime.fromtimestamp(arrived, tz=UTC)

    def _Webhook__verify_timestamp(self, timestamp_header: str) -> datetime:  # the verifier's own check, overridden
        try:
            timestamp = datetime.fromtimestamp(float(timestamp_header), tz=UTC)
        except ValueError:
            raise WebhookVerificationError("Invalid Signature Headers") from None
        if abs(timestamp - self.arrived) > TOLERANCE:
            raise WebhookVerificationError("Message timestamp outside the tolerance")
        return timestamp


@dataclass(frozen=True)
class HookInfo:
    id: int
    token: str
    secret: str
    agent_id: int
    agent_key: str
    events: frozenset[str]
    acknowledged_at: float


@dataclass
class DeliveryReport:
    problems: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)


def soak_hooks(client: Client, workload: Workload) -> dict[str, HookInfo]:
    keys = {agent.id: agent.key for agent in workload.agents}
    hooks = {}
    for op in client.ops:
        if op.kind == "create_webhook" and op.result == "ok":
            data, token = op.data, op.target["token"]
            agent = op.target["agent"]
            events = frozenset(data["events"])
            hooks[token] = HookInfo(data["id"], token, data["secret"], agent, keys[agent], events, op.completed)
    return hooks


def _token(request: Received) -> str:
    return request.target.rsplit("/h/", 1)[-1]


def _delivery_id(request: Received) -> int | None:
    value = request.header("X-TaskHive-Delivery") or ""
    return int(value[4:]) if value.startswith("whd_") and value[4:].isdigit() else None


def check_requests(report: DeliveryReport, hooks: dict[str, HookInfo], requests: list[Received], db) -> None:
    events = {row[0]: row[1:] for row in db.execute("SELECT id, type, data FROM event").fetchall()}
    deliveries = {row[0]: row[1:] for row in db.execute("SELECT id, webhook_id, event_id FROM webhook_delivery")}
    bad_signatures = 0
    for request in requests:
        where = f"request #{request.number} to {request.target} (webhook-id {request.webhook_id})"
        hook = hooks.get(_token(request))
        if hook is None:
            report.problems.append(f"{where}: no webhook of the soak has this URL")
            continue
        try:
            payload = VerifierAt(hook.secret, request.at).verify(request.body, request.headers)
        except WebhookVerificationError as error:
            bad_signatures += 1
            report.problems.append(f"{where}: Standard Webhooks verification failed: {error}")
            continue
        timestamp = int(request.header("webhook-timestamp") or 0)
        taskhive = "sha256=" + hmac.new(hook.secret.encode(), request.body, hashlib.sha256).hexdigest()
        delivery_id = _delivery_id(request)
        checks = {
            "X-TaskHive-Signature": request.header("X-TaskHive-Signature") == taskhive,
            "webhook-id": request.webhook_id == f"evt_{payload.get('event_id')}",
            "X-TaskHive-Event": request.header("X-TaskHive-Event") == payload.get("event"),
            "fresh timestamp": abs(timestamp - request.at) <= FRESH_SECONDS,
        }
        for name, passed in checks.items():
            if not passed:
                bad_signatures += name.startswith("X-TaskHive-Signature")
                report.problems.append(f"{where}: {name} wrong")
        committed = events.get(payload.get("event_id"))
        if committed is None:
            report.problems.append(f"{where}: event {payload.get('event_id')} was never committed (rolled back?)")
        elif committed[0] != payload["event"] or committed[1] != payload["data"]:
            report.problems.append(f"{where}: differs from committed event: {committed} vs {payload}")
        if deliveries.get(delivery_id) != (hook.id, payload.get("event_id")):
            report.problems.append(f"{where}: delivery {delivery_id} is {deliveries.get(delivery_id)} in the database")
    report.figures["signatures_failed"] = bad_signatures


def check_coverage(report: DeliveryReport, hooks: dict[str, HookInfo], requests: list[Received], db) -> None:
    by_id = {hook.id: hook for hook in hooks.values()}
    rows = db.execute(
        "SELECT id, webhook_id, event_id, status FROM webhook_delivery WHERE webhook_id = ANY(%s)", (list(by_id),)
    ).fetchall()
    got = Counter(_delivery_id(r) for r in requests if r.answered and 200 <= r.reply.status < 300)
    for delivery_id, webhook_id, event_id, status in rows:
        if status != "succeeded" or not got[delivery_id]:
            report.problems.append(
                f"LOST event: delivery {delivery_id} (event {event_id} to webhook {webhook_id}) is {status}, "
                f"{got[delivery_id]} accepted at the receiver"
            )
    written = {(webhook_id, event_id) for _, webhook_id, event_id, _ in rows}
    missing = 0
    for event_id, event_type, agent_id, created_at in db.execute(
        "SELECT id, type, agent_id, created_at FROM event WHERE agent_id IS NOT NULL"
    ).fetchall():
        for hook in hooks.values():
            subscribed = hook.agent_id == agent_id and event_type in hook.events
            if subscribed and created_at.timestamp() > hook.acknowledged_at and (hook.id, event_id) not in written:
                missing += 1
                report.problems.append(f"event {event_id} ({event_type}) has no delivery to webhook {hook.id}")
    report.figures.update(
        events_committed=len(rows),
        events_delivered=sum(1 for row in rows if got[row[0]]),
        events_without_delivery=missing,
        receiver_requests=len(requests),
        redelivered_webhook_ids=sum(1 for row in rows if got[row[0]] > 1),
    )


def get_json(http: httpx.Client, path: str, key: str, params: dict | None = None) -> dict:
    """A checker's read, retried on 503: after PostgreSQL's restart a server may still hold dead connections."""
    for _ in range(20):
        response = http.get(path, params=params, headers={"Authorization": f"Bearer {key}"})
        if response.status_code != 503:
            break
        CHECKER_503.append(time.time())
        time.sleep(0.25)
    response.raise_for_status()
    return response.json()


def fetch_log(http: httpx.Client, hook: HookInfo) -> list[dict]:
    found, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = get_json(http, f"/api/v1/webhooks/{hook.id}/deliveries", hook.agent_key, params)
        found += page["data"]
        cursor = page["meta"].get("cursor")
        if not page["meta"].get("has_more"):
            return found


def _matches(attempt: dict, request: Received) -> bool:
    outcome = attempt["outcome"]
    if outcome == "succeeded":
        return request.answered and 200 <= request.reply.status < 300
    if outcome == "failed":
        return request.answered and request.reply.status == attempt["response_status"]
    # A timeout runs on the worker's clock: a worker starved of CPU can give up on an answer the receiver wrote in
    # time (the log then shows the status if the headers had arrived). Any request the receiver saw fits.
    return outcome in ("timeout", "network_error")


def may_be_unseen(attempt: dict) -> bool:
    """An attempt that may never have reached the receiver: interrupted (issue 19's contract), or timed out or cut
    off before any answer, since the worker's deadline covers connecting and sending too, and a starved worker can
    run out of it before its request leaves."""
    unknown = attempt["outcome"] in ("timeout", "network_error") and attempt["response_status"] is None
    return attempt["outcome"] == "interrupted" or unknown


def explained(attempts: list[dict], requests: list[Received]) -> bool:
    """Whether the attempts, in order, are the requests in order, where an attempt that may be unseen (above) may
    have reached the receiver or not."""
    reachable = {0}
    for attempt in attempts:
        after = set()
        for seen in reachable:
            if may_be_unseen(attempt):
                after.add(seen)
            if seen < len(requests) and (attempt["outcome"] == "interrupted" or _matches(attempt, requests[seen])):
                after.add(seen + 1)
        reachable = after
    return len(requests) in reachable


def check_log(report: DeliveryReport, hooks: dict[str, HookInfo], requests: list[Received], api_url: str) -> None:
    seen: dict[int | None, list[Received]] = defaultdict(list)
    for request in sorted(requests, key=lambda r: r.number):
        seen[_delivery_id(request)].append(request)
    outcomes: Counter[str] = Counter()
    compared = unseen = 0
    with httpx.Client(base_url=api_url, timeout=60) as http:
        for hook in hooks.values():
            for delivery in fetch_log(http, hook):
                compared += 1
                attempts = sorted(delivery["attempts"], key=lambda a: a["attempt_number"])
                outcomes.update(a["outcome"] for a in attempts)
                numbers = [a["attempt_number"] for a in attempts]
                arrived = seen.get(delivery["id"], [])
                where = f"delivery {delivery['id']} (webhook {hook.id}, event {delivery['event_id']})"
                if numbers != list(range(1, delivery["attempt_count"] + 1)):
                    report.problems.append(f"{where}: attempts {numbers}, attempt_count {delivery['attempt_count']}")
                if any(a["outcome"] == "in_progress" for a in attempts):
                    report.problems.append(f"{where}: an attempt is still in progress after quiescence")
                unseen += max(0, len(attempts) - len(arrived))
                if not explained(attempts, arrived):
                    report.problems.append(
                        f"{where}: the log does not match the receiver: log "
                        f"{[(a['outcome'], a['response_status']) for a in attempts]}, receiver "
                        f"{[(r.reply.status if r.answered else 'unanswered') for r in arrived]}"
                    )
    report.figures.update(
        log_deliveries=compared,
        log_attempts=sum(outcomes.values()),
        log_outcomes=dict(outcomes),
        log_interrupted=outcomes["interrupted"],
        log_attempts_unseen=unseen,  # interrupted, or timed out before any answer, and never at the receiver
        receiver_answers=dict(Counter(str(r.reply.status) if r.answered else "unanswered" for r in requests)),
    )


def check_deliveries(
    url: str, api_url: str, client: Client, workload: Workload, requests: list[Received]
) -> DeliveryReport:
    report = DeliveryReport()
    hooks = soak_hooks(client, workload)
    report.figures["webhooks"] = len(hooks)
    with psycopg.connect(url, autocommit=True) as db:
        check_requests(report, hooks, requests, db)
        check_coverage(report, hooks, requests, db)
        inactive = db.execute("SELECT id, disabled_reason FROM webhook WHERE NOT is_active").fetchall()
        report.problems += [f"webhook {row[0]} was disabled: {row[1]}" for row in inactive]
    check_log(report, hooks, requests, api_url)
    return report
