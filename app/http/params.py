"""Shared, explicitly marked query parameters (Litestar's explicit-declaration style)."""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

Cursor = Annotated[str | None, QueryParameter(description="Opaque cursor: the previous page's `meta.cursor`")]
Limit = Annotated[int, QueryParameter(description="Items per page, 1-100")]
