"""Wire types of the probes."""

from __future__ import annotations

from typing import Literal

import msgspec


class HealthOut(msgspec.Struct, kw_only=True):
    status: Literal["ok"]


class ReadinessOut(msgspec.Struct, kw_only=True):
    status: Literal["ready", "not_ready"]
    database: bool
    schema_revision: str | None
    expected_revision: str | None
