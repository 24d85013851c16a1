"""Agora with its SQL recorded, request by request, for the pgbench replay of the write scenarios.

    BENCH_CAPTURE_FILE=/tmp/x.jsonl AGORA_DATABASE_URL=... uvicorn tests.bench.capture_app:create --factory

Every statement a request sends on its leased connection (authentication, rate limit, idempotency, the use case,
COMMIT and the wake-up NOTIFY) is written as one JSON line per request when the connection goes back to the pool,
in the form PostgreSQL received it: `$n` placeholders, each parameter as text with the type OID psycopg sent, and
the round trips as psycopg made them (a pipeline, or a parameterless multi-statement query, is one round trip; a
result read inside a pipeline ends a round trip there, as psycopg must wait for it).

With BENCH_CAPTURE_ROLLBACK=1 every COMMIT is sent as ROLLBACK (and recorded as COMMIT): the service behaves and
answers exactly as usual but changes nothing, so the captured requests can be replayed by pgbench against the
very state they were captured from. Measurement never runs on this app: recording costs time.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from psycopg import AsyncConnection, AsyncCursor
from psycopg._queries import PostgresQuery  # the conversion psycopg itself applies before sending
from psycopg.adapt import PyFormat, Transformer

from app.main import app_from_environment
from app.repo.connections import PoolSource

_recordings: dict[int, _Recording] = {}


class _Recording:
    """The round trips of one request on one connection: a step is a list of statements sent together."""

    def __init__(self) -> None:
        self.steps: list[list[dict[str, Any]]] = []
        self.pipeline: list[dict[str, Any]] | None = None
        self.depth = 0

    def add(self, statements: list[dict[str, Any]]) -> None:
        if self.pipeline is not None:
            self.pipeline.extend(statements)
        else:
            self.steps.append(statements)


def _text(transformer: Transformer, value: Any) -> str | None:
    if value is None:
        return None
    return bytes(transformer.get_dumper(value, PyFormat.TEXT).dump(value)).decode()


def _statement(connection: AsyncConnection, query: Any, params: Any) -> list[dict[str, Any]]:
    text = query if isinstance(query, str) else bytes(query).decode()
    if params is None:
        # Sent as one simple query: split into its statements (control statements only, no literals with ';').
        return [{"sql": part.strip(), "values": [], "oids": []} for part in text.split(";") if part.strip()]
    converted = PostgresQuery(Transformer(connection))
    converted.convert(text, params)
    ordered = [params[name] for name in converted._order] if isinstance(params, dict) else list(params)
    transformer = Transformer(connection)
    values: list[str | None] = []
    oids: list[int] = []
    for value in ordered:
        values.append(_text(transformer, value))
        oids.append(0 if value is None else transformer.get_dumper(value, PyFormat.TEXT).oid)
    return [{"sql": converted.query.decode(), "values": values, "oids": oids}]


def install(capture_file: str, *, rollback: bool) -> None:
    """Wrap psycopg's execute and pipeline and the pool source's acquire/release (this process only)."""
    original_execute = AsyncConnection.execute
    original_pipeline = AsyncConnection.pipeline
    original_acquire = PoolSource.acquire
    original_release = PoolSource.release

    async def execute(self, query, params=None, *args, **kwargs):
        recording = _recordings.get(id(self))
        if recording is None:
            return await original_execute(self, query, params, *args, **kwargs)
        statements = _statement(self, query, params)
        recording.add(statements)
        if rollback and isinstance(query, str) and re.match(r"\s*COMMIT\b", query, re.IGNORECASE):
            query = re.sub(r"^\s*COMMIT\b", "ROLLBACK", query, flags=re.IGNORECASE)
        cursor = await original_execute(self, query, params, *args, **kwargs)
        if recording.pipeline is None and len(statements) == 1 and cursor.description:
            # The row a statement returned, for the replay to pass on ids it generated (then rewind for the app).
            rows = await cursor.fetchall()
            await cursor.scroll(0, mode="absolute")
            if len(rows) == 1:
                transformer = Transformer(self)
                statements[0]["columns"] = [column.name for column in cursor.description]
                statements[0]["result"] = [_text(transformer, value) for value in rows[0]]
        return cursor

    @asynccontextmanager
    async def pipeline(self):
        recording = _recordings.get(id(self))
        if recording is not None:
            recording.depth += 1
            if recording.depth == 1:
                recording.pipeline = []
        try:
            async with original_pipeline(self) as opened:
                yield opened
        finally:
            if recording is not None:
                recording.depth -= 1
                if recording.depth == 0:
                    batch, recording.pipeline = recording.pipeline, None
                    if batch:
                        recording.steps.append(batch)

    async def acquire(self):
        connection = await original_acquire(self)
        _recordings[id(connection)] = _Recording()
        return connection

    async def release(self, connection):
        recording = _recordings.pop(id(connection), None)
        if recording is not None and recording.steps:
            with open(capture_file, "a") as out:  # noqa: ASYNC230 (never measured; order matters more)
                out.write(json.dumps({"steps": recording.steps}) + "\n")
        await original_release(self, connection)

    def answered(fetch):
        """Reading a result inside a pipeline makes psycopg wait for it: a round trip ends there."""

        async def wrapper(self, *args, **kwargs):
            recording = _recordings.get(id(self.connection))
            if recording is not None and recording.pipeline:
                recording.steps.append(recording.pipeline)
                recording.pipeline = []
            return await fetch(self, *args, **kwargs)

        return wrapper

    for name in ("fetchone", "fetchmany", "fetchall"):
        setattr(AsyncCursor, name, answered(getattr(AsyncCursor, name)))
    AsyncConnection.execute = execute
    AsyncConnection.pipeline = pipeline
    PoolSource.acquire = acquire
    PoolSource.release = release


def create() -> Litestar:
    install(os.environ["BENCH_CAPTURE_FILE"], rollback=os.environ.get("BENCH_CAPTURE_ROLLBACK") == "1")
    return app_from_environment()
