"""One typed Settings object, read once from the environment and passed in; nothing reads os.environ later."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from app.crypto import KeyRing, KeyRingError
from app.network import parse_trusted_proxies
from domain.webhooks import parse_allow_cidrs

ENV_PREFIX = "AGORA_"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and what it expects."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    # Any PostgreSQL 15+; when empty an embedded PostgreSQL is started with its data in `data_dir`.
    database_url: str = ""
    data_dir: str = ".data"
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    workers: Annotated[int, Meta(ge=1, le=64)] = 1
    db_pool_min: Annotated[int, Meta(ge=1, le=200)] = 2
    db_pool_max: Annotated[int, Meta(ge=1, le=500)] = 10
    db_statement_timeout_ms: Annotated[int, Meta(ge=100)] = 5000
    rate_limit_per_minute: Annotated[int, Meta(ge=1, le=1_000_000)] = 100
    # Requests without a valid key (self-registration, a wrong or missing key) are counted per client address
    # (an IPv6 address by its /64). The address is the peer's, or what X-Forwarded-For says when the peer is one
    # of trusted_proxies (addresses or networks, comma-separated; empty: no proxy is believed).
    anonymous_rate_limit_per_minute: Annotated[int, Meta(ge=1, le=1_000_000)] = 30
    trusted_proxies: str = ""
    idempotency_ttl_hours: Annotated[int, Meta(ge=1, le=24 * 30)] = 24
    max_body_bytes: Annotated[int, Meta(ge=1024, le=50_000_000)] = 1_048_576
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    public_base_url: str = ""
    # The data key ring that seals secrets at rest (app/crypto.py): `<key id>:<32 random bytes, base64url>` entries,
    # the first sealing, all opening (`agora secrets new-key` prints one). Empty with the embedded database: the key
    # is kept in `<data_dir>/secret_key`. Empty with a configured database: serving refuses to start.
    secret_key: str = ""
    # Event streams (SSE): a comment line this often keeps proxies from closing an idle stream; the outbox is read
    # on every NOTIFY and at least this often; a stream whose client lags by more events than this catches up
    # from the outbox instead of holding them in memory.
    sse_heartbeat_seconds: Annotated[float, Meta(gt=0, le=300)] = 15.0
    events_poll_seconds: Annotated[float, Meta(gt=0, le=60)] = 1.0
    sse_queue_size: Annotated[int, Meta(ge=1, le=100_000)] = 1000
    sse_max_streams_per_agent: Annotated[int, Meta(ge=1, le=1000)] = 10
    # Events (with their finished webhook deliveries and attempts) older than this are deleted; a stream resumed
    # from one gets 400 EVENT_EXPIRED.
    events_retention_days: Annotated[int, Meta(ge=1, le=3650)] = 30
    # How often each server process expires the tasks whose expires_at has passed and ends claim leases that ran out
    # (a request touching such a task does it first, if it comes sooner).
    task_sweep_seconds: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    # Webhook deliveries. `agora serve` runs the delivery worker in-process unless webhook_worker is false (run
    # `agora worker` processes instead). webhook_allow_cidrs lets chosen private ranges through the SSRF guard
    # (e.g. "127.0.0.1/32" for a local receiver); empty in production. webhook_retry_scale compresses the retry
    # schedule and Retry-After (tests); webhook_disable_after_* decide when an endpoint that keeps failing is
    # switched off: this many consecutive failed attempts spanning at least this long.
    webhook_worker: bool = True
    webhook_allow_cidrs: str = ""
    webhook_timeout_seconds: Annotated[float, Meta(gt=0, le=60)] = 10.0
    webhook_concurrency: Annotated[int, Meta(ge=1, le=1000)] = 32
    webhook_per_endpoint_concurrency: Annotated[int, Meta(ge=1, le=100)] = 4
    webhook_retry_scale: Annotated[float, Meta(gt=0, le=1)] = 1.0
    webhook_disable_after_failures: Annotated[int, Meta(ge=1, le=1000)] = 10
    webhook_disable_after_seconds: Annotated[float, Meta(ge=0)] = 86400.0
    webhook_max_response_bytes: Annotated[int, Meta(ge=1024, le=10_000_000)] = 65536

    def __post_init__(self) -> None:
        if self.db_pool_min > self.db_pool_max:
            raise SettingsError(
                f"{ENV_PREFIX}DB_POOL_MIN ({self.db_pool_min}) must not exceed {ENV_PREFIX}DB_POOL_MAX ({self.db_pool_max})"
            )
        try:
            parse_allow_cidrs(self.webhook_allow_cidrs)
        except ValueError as error:
            raise SettingsError(f"{ENV_PREFIX}WEBHOOK_ALLOW_CIDRS: {error}") from None
        try:
            parse_trusted_proxies(self.trusted_proxies)
        except ValueError as error:
            raise SettingsError(f"{ENV_PREFIX}TRUSTED_PROXIES: {error}") from None
        if self.database_url and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise SettingsError(f"{ENV_PREFIX}DATABASE_URL must be a postgresql:// URL, got {self.database_url!r}")
        try:
            KeyRing.parse(self.secret_key, source=f"{ENV_PREFIX}SECRET_KEY")
        except KeyRingError as error:
            raise SettingsError(str(error)) from None

    # Settings end up in tracebacks (rich's show the locals of every frame) and debug output: never with the key.
    def _shown(self) -> dict[str, object]:
        shown = {f.name: getattr(self, f.name) for f in msgspec.structs.fields(self)}
        if shown["secret_key"]:
            shown["secret_key"] = "<redacted>"  # noqa: S105 (a placeholder, not a password)
        return shown

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in self._shown().items())})"

    def __rich_repr__(self) -> list[tuple[str, object]]:
        return list(self._shown().items())

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def with_overrides(self, **changes: object) -> Settings:
        return msgspec.structs.replace(self, **changes)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read AGORA_* variables; a bad value stops the start with a message naming the variable."""
    environ = os.environ if environ is None else environ
    fields = {f.name for f in msgspec.structs.fields(Settings)}
    raw = {
        name.removeprefix(ENV_PREFIX).lower(): value
        for name, value in environ.items()
        if name.startswith(ENV_PREFIX) and name.removeprefix(ENV_PREFIX).lower() in fields
    }
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as error:
        # msgspec says "Expected `int`, got `str` - at `$.port`"; name the variable instead of the path.
        message = str(error)
        if " - at `$." in message:
            detail, field = message.rsplit(" - at `$.", 1)
            message = f"{ENV_PREFIX}{field.rstrip('`').upper()}: {detail}"
        raise SettingsError(f"invalid setting: {message}") from None
