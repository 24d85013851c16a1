"""The soak's client and its history (Jepsen's invoke / ok / fail / info), written as JSON lines.

Every write carries an Idempotency-Key and is retried with that same key, with jittered exponential backoff, on a
connection error, a request past its deadline, `409 IDEMPOTENCY_KEY_IN_FLIGHT`, `429`, and any 5xx (none of these
stored a response, so the retry is safe and tells us what happened), until a definite answer or the operation's
deadline. An operation that never got one stays `info` (unknown outcome) until the checker resolves it by sending
it once more with its key after the faults.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

#: One HTTP request's deadline: at worst the pool's 10 s wait for a connection, then a 5 s statement timeout.
REQUEST_DEADLINE = 20.0
#: How long an operation is retried before it is left `info`.
OPERATION_DEADLINE = 60.0
RETRY_IN_FLIGHT = "IDEMPOTENCY_KEY_IN_FLIGHT"


@dataclass
class Op:
    """One operation: a request, its retries, and what became of it."""

    id: int
    kind: str  # e.g. "post_task"
    method: str
    path: str
    key: str | None  # the Idempotency-Key (None for reads)
    auth: str | None
    body: dict | None = None
    target: dict = field(default_factory=dict)  # what the checker needs to find its effect (task_id, ...)
    result: str = "pending"  # ok | fail | info
    status: int | None = None
    code: str | None = None
    data: Any = None
    replayed: bool = False
    attempts: list[dict] = field(default_factory=list)
    invoked: float = 0.0
    completed: float = 0.0
    resolved_late: bool = False  # `info` during the run, decided by the checker's same-key retry

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "key": self.key,
            "target": self.target,
            "result": self.result,
            "status": self.status,
            "code": self.code,
            "replayed": self.replayed,
            "resolved_late": self.resolved_late,
            "attempts": self.attempts,
            "invoked": self.invoked,
            "completed": self.completed,
        }


@dataclass
class Response:
    at: float
    status: int
    url: str
    op: int


class Client:
    """Sends operations to any of the API processes and writes the history."""

    def __init__(self, http: httpx.AsyncClient, urls: list[str], history_path: Path, rng: random.Random) -> None:
        self.http, self.urls, self.rng = http, urls, rng
        self.ops: list[Op] = []
        self.responses: list[Response] = []  # every HTTP answer, for the 500-outside-a-fault check
        self.retries: Counter[str] = Counter()
        self.hung: list[dict] = []  # requests that reached their deadline
        self._history = history_path.open("w", encoding="utf-8")
        self._next_id = 0

    def close(self) -> None:
        self._history.close()

    def _write(self, kind: str, op: Op, **extra: Any) -> None:
        record = {"type": kind, "op": op.id, "f": op.kind, "key": op.key, "time": time.time(), **extra}
        self._history.write(json.dumps(record, default=str) + "\n")

    def new(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        auth: str | None,
        key: str | None,
        body: dict | None = None,
        **target: Any,
    ) -> Op:
        op = Op(self._next_id, kind, method, path, key, auth, body, dict(target))
        self._next_id += 1
        self.ops.append(op)
        return op

    async def run(self, op: Op, *, deadline: float = OPERATION_DEADLINE, late: bool = False) -> Op:
        """Send `op` (again, when `late`: the checker resolving an unknown outcome) until a definite answer."""
        if not late:
            op.invoked = time.time()
            self._write("invoke", op, path=op.path, body=op.body, target=op.target)
        give_up = time.monotonic() + deadline
        headers = {"Authorization": f"Bearer {op.auth}"} if op.auth else {}
        if op.key:
            headers["Idempotency-Key"] = op.key
        tries = 0
        while True:
            url = self.rng.choice(self.urls)
            began = time.time()
            reason = await self._attempt(op, url, headers, began)
            op.attempts.append({"url": url, "at": began, "seconds": round(time.time() - began, 4), "outcome": reason})
            if reason in ("ok", "fail"):
                op.result, op.completed, op.resolved_late = reason, time.time(), late
                self._write(reason, op, status=op.status, code=op.code, data=op.data, late=late)
                return op
            self.retries[reason] += 1
            tries += 1
            pause = min(2.0, 0.05 * 2**tries) * self.rng.uniform(0.5, 1.5)
            if time.monotonic() + pause > give_up:
                op.result, op.completed = "info", time.time()
                self._write("info", op, last=reason, late=late)
                return op
            await asyncio.sleep(pause)

    async def _attempt(self, op: Op, url: str, headers: dict[str, str], began: float) -> str:
        """One request: "ok", "fail", or why it must be retried."""
        try:
            async with asyncio.timeout(REQUEST_DEADLINE):
                response = await self.http.request(op.method, f"{url}/api/v1{op.path}", json=op.body, headers=headers)
        except TimeoutError:
            self.hung.append({"op": op.id, "kind": op.kind, "url": url, "at": began})
            return "deadline"
        except httpx.TransportError as error:
            return f"connection:{type(error).__name__}"
        self.responses.append(Response(time.time(), response.status_code, url, op.id))
        op.status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        error = payload.get("error") if isinstance(payload, dict) else None
        op.code = error.get("code") if isinstance(error, dict) else None
        if response.status_code == 409 and op.code == RETRY_IN_FLIGHT:
            return "409_in_flight"
        if response.status_code == 429 or response.status_code >= 500:
            return f"http_{response.status_code}"
        if response.status_code < 300:
            op.data = payload["data"]
            op.replayed = response.headers.get("idempotency-replayed") == "true"
            return "ok"
        op.data = error
        return "fail"
