"""Field types shared by the wire types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from msgspec import Meta

#: An instant as the API writes it: RFC 3339 with its offset (PostgreSQL's timestamptz is always aware), so the
#: schema can say `format: date-time`; a naive datetime would not be RFC 3339.
Timestamp = Annotated[datetime, Meta(tz=True)]

#: "Some character that is not white space", spelled so that Python's `re` (which msgspec matches with) and
#: ECMA-262 (which JSON Schema patterns follow) agree: `\S` differs between them (U+001C-U+001F and U+0085 are white
#: space only to Python, U+FEFF only to ECMA-262), so this class leaves out the union of both sets.
NOT_BLANK = "[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
