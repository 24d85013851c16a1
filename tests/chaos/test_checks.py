"""The soak's own judges, on made-up inputs: each refuses what it must refuse (a check that cannot fail tests nothing)."""

from __future__ import annotations

import base64
import itertools
import random
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.chaos.checker import Findings, _compare
from tests.chaos.deliveries import VerifierAt, explained
from tests.chaos.soak import plan_faults
from tests.webhook_receiver import Received, Reply


def _request(number: int, status: int | None) -> Received:
    """A request the receiver answered with `status`, or that its client gave up on (None)."""
    reply = Reply(status or 200, delay=0 if status else 3)
    return Received(number, 0.0, 0.0, "POST", "/h/x", {}, b"", reply, answered=status is not None)


def _attempt(outcome: str, status: int | None = None) -> dict:
    return {"outcome": outcome, "response_status": status}


def test_the_log_must_be_what_the_receiver_saw_in_order():
    log = [_attempt("failed", 500), _attempt("timeout"), _attempt("succeeded", 200)]
    assert explained(log, [_request(0, 500), _request(1, None), _request(2, 200)])
    assert not explained(log, [_request(0, None), _request(1, 500), _request(2, 200)])  # out of order
    twice = [_attempt("failed", 500), _attempt("failed", 500), _attempt("succeeded", 200)]
    assert not explained(twice, [_request(0, 500), _request(1, 200)])  # an attempt the receiver never saw
    assert not explained(log[2:], [_request(0, 200), _request(1, 200)])  # a request no attempt explains
    assert not explained([_attempt("failed", 500)], [_request(0, 502)])
    assert not explained([_attempt("succeeded", 200)], [_request(0, None)])
    # A timeout on the worker's clock: the receiver may have answered in time on its own.
    assert explained([_attempt("timeout", 200), _attempt("succeeded", 200)], [_request(0, 200), _request(1, 200)])
    # ... or before its request left a starved worker, when no answer came back.
    assert explained([_attempt("timeout"), _attempt("succeeded", 200)], [_request(0, 200)])
    assert not explained([_attempt("timeout", 200), _attempt("succeeded", 200)], [_request(0, 200)])


def test_an_interrupted_attempt_may_or_may_not_have_arrived():
    log = [_attempt("interrupted"), _attempt("succeeded", 200)]
    assert explained(log, [_request(0, 200)])
    assert explained(log, [_request(0, 200), _request(1, 200)])
    assert not explained(log, [_request(0, 200)] * 3)
    assert not explained(log, [])


def test_the_verifier_judges_the_timestamp_at_arrival_and_the_signature_always():
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    sent_at = int(time.time()) - 3600  # an hour ago: the plain verifier would refuse it as too old
    body = '{"event":"task.created"}'
    signature = Webhook(secret).sign("evt_1", datetime.fromtimestamp(sent_at, tz=UTC), body)
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(sent_at), "webhook-signature": signature}
    assert VerifierAt(secret, sent_at + 1).verify(body, headers) == {"event": "task.created"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        VerifierAt(secret, sent_at + 1).verify(body.replace("created", "cancelled"), headers)
    with pytest.raises(WebhookVerificationError):
        VerifierAt(secret, sent_at + 301).verify(body, headers)


def test_effects_are_counted_lost_duplicated_or_phantom():
    findings = Findings()
    _compare(findings, "cancel", Counter({1: 1, 2: 1}), Counter({1: 1, 3: 2}))
    assert (findings.lost, findings.duplicated, findings.phantom) == (1, 0, 2)
    _compare(findings, "settlement", Counter({4: 1}), Counter({4: 2}))
    assert findings.duplicated == 1 and len(findings.problems) == 3


def test_faults_fall_in_the_middle_of_the_run_and_apart():
    for seed in range(50):
        plan = plan_faults(random.Random(seed), 2000)
        points = [point for point, _ in plan]
        assert sorted(kind for _, kind in plan) == ["api_kill"] * 3 + ["pg_restart"]
        assert points[0] >= 200 and points[-1] <= 1700
        assert all(b - a >= 160 for a, b in itertools.pairwise(points))
