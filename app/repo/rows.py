"""Row types: each record's SELECT list declared once, field by field, and its reader derived from it.

A declaration names, for every field of a record, the SQL expression it is read from (and how the value is
converted: an enum, a tuple); a field may be another row type read in place (a task's category, None when its
first column is NULL). From it come the SELECT list, each expression aliased with its field's name so that the
statement says what it returns, and the reader, which builds the record from a row's columns in that order. The
order is the declaration's, so the two cannot drift apart, and no caller counts columns.

The reader is generated as Python source (as `dataclasses` generates `__init__`): one call with each field's
column index written in, as fast as a hand-written mapping, with no per-field loop on every row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")

Reader = Callable[[Sequence[Any], int], T]


@dataclass(frozen=True, slots=True)
class Column:
    """A field read from one SQL expression, converted by `convert` (e.g. `TaskStatus`, `tuple`) when given."""

    sql: str
    convert: Callable[[Any], Any] | None = None


@dataclass(frozen=True, slots=True)
class Nested:
    """A field read as another row type in place; with `optional`, None when its first column is NULL (an outer
    join that found nothing)."""

    row: RowType[Any]
    optional: bool = False


Field = str | Column | Nested


@dataclass(frozen=True, slots=True)
class RowType(Generic[T]):
    """A record's SELECT list and its reader: `read(row, start)` builds the record from `row[start:start + width]`.
    `expressions[i]` is read into the field path `aliases[i]` (nested fields joined by an underscore)."""

    expressions: tuple[str, ...]
    aliases: tuple[str, ...]
    read: Reader[T]

    @property
    def columns(self) -> str:
        """The SELECT list, each expression aliased with its field's name."""
        return self.select_list()

    def select_list(self, template: str = "{}") -> str:
        """The SELECT list with each expression put into `template` (e.g. a CASE around it), aliased as in
        `columns`, so the reader reads it the same way."""
        return ", ".join(
            f'{template.format(sql)} AS "{alias}"' for sql, alias in zip(self.expressions, self.aliases, strict=True)
        )

    @property
    def width(self) -> int:
        return len(self.expressions)

    def read_all(self, rows: Sequence[Sequence[Any]]) -> list[T]:
        read = self.read
        return [read(row, 0) for row in rows]


def row_type(record: Callable[..., T], /, **fields: Field) -> RowType[T]:
    """Declare `record`'s row: keyword by keyword, each field and what it is read from, in the SELECT's order.
    Fields the declaration leaves out take their defaults."""
    expressions: list[str] = []
    aliases: list[str] = []
    arguments: list[str] = []  # the record call's keyword arguments, as source
    namespace: dict[str, Any] = {"record": record}
    for name, field in fields.items():
        at = len(expressions)
        if isinstance(field, Nested):
            inner = field.row
            namespace[f"read_{name}"] = inner.read
            expressions.extend(inner.expressions)
            aliases.extend(f"{name}_{alias}" for alias in inner.aliases)
            value = f"read_{name}(row, start + {at})"
            if field.optional:
                value = f"(None if row[start + {at}] is None else {value})"
        else:
            column = Column(field) if isinstance(field, str) else field
            expressions.append(column.sql)
            aliases.append(name)
            value = f"row[start + {at}]"
            if column.convert is not None:
                namespace[f"convert_{name}"] = column.convert
                value = f"convert_{name}({value})"
        arguments.append(f"{name}={value}")
    source = f"def read(row, start=0):\n    return record({', '.join(arguments)})\n"
    exec(source, namespace)  # noqa: S102 - the source is built above from field names and indexes only
    return RowType(tuple(expressions), tuple(aliases), cast(Reader[T], namespace["read"]))
