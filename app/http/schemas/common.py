"""Field types shared by the wire types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from msgspec import Meta

#: An instant as the API writes it: RFC 3339 with its offset (PostgreSQL's timestamptz is always aware), so the
#: schema can say `format: date-time`; a naive datetime would not be RFC 3339.
Timestamp = Annotated[datetime, Meta(tz=True)]
