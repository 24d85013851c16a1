"""Schemathesis hooks for the fuzz run (loaded by `schemathesis.toml`; the harness passes the keys in AGORA_FUZZ_*).

* Every operation gets the key its `security` names in the served document (agentKey, operatorKey, adminKey). The
  worker's side of the task life (bidding, delivering, withdrawing) is sent with a second agent of another operator:
  with one agent the stateful phase could never get past SELF_CLAIM.
* With AGORA_FUZZ_PEERS=1 (a run of the agent operations only) both agents are loaded as peers that must not see
  each other's objects, so `object_level_authorization` replays the poster's reads as the worker; everything is
  sent as the poster there.
* Every write gets a fresh Idempotency-Key (unless the case made that header invalid on purpose), so "same key,
  different body" (422) only happens in the idempotency tests.
* The fuzz agents themselves are never suspended: an admin suspend aimed at one is redirected to a decoy agent,
  because a suspended agent's key is refused for the rest of the run and every later case would test nothing.
* A failure that `tests/fuzz/exceptions.py` accepts (a business rule a schema cannot express) is dropped, and the
  drop logged; that file is the only place such exceptions live.
* Every response is appended to AGORA_FUZZ_LOG (one JSON line: phase, operation, status) so the harness can count
  cases per phase and 5xx responses, whichever check would or would not have reported them.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import uuid

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import negated_parameters

from tests.fuzz.exceptions import accepted_for

# operationId -> which agent sends it. Everything else with agentKey is the poster's (the first agent).
WORKER_OPERATIONS = frozenset({"createClaim", "withdrawClaim", "bulkClaims", "createDeliverable"})
SCHEME_KEYS = {
    "agentKey": "AGORA_FUZZ_AGENT_KEY",
    "operatorKey": "AGORA_FUZZ_OPERATOR_KEY",
    "adminKey": "AGORA_FUZZ_ADMIN_KEY",
}
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_log_lock = threading.Lock()


def _scheme(operation) -> str | None:
    security = operation.definition.raw.get("security")
    if security is None:
        security = operation.schema.raw_schema.get("security") or []
    for requirement in security:
        for name in requirement:
            return name
    return None


@schemathesis.auth(refresh_interval=None)
class FuzzKeys:
    """The key for each operation, by the scheme its `security` names."""

    def get(self, case, context):
        scheme = _scheme(context.operation)
        if scheme is None:
            return None
        if scheme == "agentKey" and context.operation.definition.raw.get("operationId") in WORKER_OPERATIONS:
            return os.environ["AGORA_FUZZ_WORKER_KEY"]
        return os.environ[SCHEME_KEYS[scheme]]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


class _Bearer:
    """One fixed key, as a peer identity for the object-level authorization check."""

    def __init__(self, variable: str) -> None:
        self.variable = variable

    def get(self, case, context):
        return os.environ[self.variable]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def after_load_schema(context, schema):
    if os.environ.get("AGORA_FUZZ_PEERS") != "1":
        return
    # schemathesis builds this from an `[auth.wfc]` file with `peers`; built here because the keys are made per run.
    from schemathesis.wfc.escalation import EscalatingAuthProvider

    peers = EscalatingAuthProvider(
        [_Bearer("AGORA_FUZZ_AGENT_KEY"), _Bearer("AGORA_FUZZ_WORKER_KEY")],
        ["poster", "worker"],
        peers=("poster", "worker"),
        pinned="poster",
    )
    schema.auth.providers.append(peers)
    # How many reads were replayed as the other agent: the proof that the check did something.
    atexit.register(lambda: _log({"peer_probes": len(peers._probed)}))


def _negative_header(case, name: str) -> bool:
    """Whether the fuzzer made this header invalid on purpose (then its value is kept)."""
    meta = case.meta
    if meta is None or not meta.is_negative_at(ParameterLocation.HEADER):
        return False
    negated = [(parameter, location) for parameter, location in negated_parameters(meta)]
    if not negated:  # a header mutation not attributed to one parameter: keep what was generated
        return any(key.lower() == name.lower() for key in case.headers or {})
    return any(
        location == ParameterLocation.HEADER and parameter.lower() == name.lower() for parameter, location in negated
    )


def _protected_agents() -> set[str]:
    return {value for value in os.environ.get("AGORA_FUZZ_PROTECTED_AGENTS", "").split(",") if value}


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() in WRITES and not _negative_header(case, "Idempotency-Key"):
        case.headers = case.headers or {}
        for name in [key for key in case.headers if key.lower() == "idempotency-key"]:
            del case.headers[name]
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    suspends = case.operation.definition.raw.get("operationId") == "suspendAgent"
    if suspends and str((case.path_parameters or {}).get("agent_id")) in _protected_agents():
        case.path_parameters["agent_id"] = os.environ["AGORA_FUZZ_DECOY_AGENT"]


def _log(line: dict) -> None:
    path = os.environ.get("AGORA_FUZZ_LOG")
    if path:
        with _log_lock, open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")


def _error(response) -> dict:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    operation_id = case.operation.definition.raw.get("operationId")
    exception = accepted_for(tuple(failure.checks), operation_id, case, _error(response))
    if exception is None:
        return True
    _log({"dropped": exception.name, "operation": case.operation.label, "status": response.status_code})
    return False


def _key_name(authorization: str | None) -> str:
    """Which of the fuzz keys a request carried (never the key itself)."""
    if not authorization:
        return "none"
    for name in ("AGORA_FUZZ_AGENT_KEY", "AGORA_FUZZ_WORKER_KEY", "AGORA_FUZZ_OPERATOR_KEY", "AGORA_FUZZ_ADMIN_KEY"):
        if authorization == f"Bearer {os.environ.get(name)}":
            return name.removeprefix("AGORA_FUZZ_").removesuffix("_KEY").lower()
    return "other"


@schemathesis.hook
def after_call(context, case, response):
    meta = case.meta
    line = {
        "phase": meta.phase.name.value if meta is not None else "unknown",
        "mode": meta.generation.mode.value if meta is not None else "unknown",
        "operation": case.operation.label,
        "status": response.status_code,
        "key": _key_name(response.request.headers.get("Authorization")),
        "code": _error(response).get("code") if response.status_code >= 400 else None,
        "elapsed": round(response.elapsed, 4),
    }
    if response.status_code >= 500:
        line["request"] = {
            "method": case.method,
            "url": response.request.url,
            "headers": {k: v for k, v in response.request.headers.items() if k.lower() != "authorization"},
            "body": (response.request.body or b"")[:2000].decode("utf-8", "replace")
            if isinstance(response.request.body, bytes)
            else str(response.request.body)[:2000],
        }
        line["response"] = response.text[:2000]
    _log(line)
