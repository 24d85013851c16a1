"""Tidying the document's components: only those something refers to, under readable names."""

from __future__ import annotations

import re
from typing import Any

import msgspec

_SCHEMA = "#/components/schemas/{name}"


def _refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["$ref"]} if isinstance(value.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value))
    return set()


def only_referenced(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop the components nothing refers to (Litestar's own schemas of the types msgspec now describes)."""
    schemas = doc["components"]["schemas"]
    prefix = _SCHEMA.format(name="")
    kept: set[str] = set()
    roots = [doc["paths"], doc["components"].get("responses", {})]
    pending = {ref.removeprefix(prefix) for ref in _refs(roots) if ref.startswith(prefix)}
    while pending:
        name = pending.pop()
        kept.add(name)
        pending |= {ref.removeprefix(prefix) for ref in _refs(schemas[name]) if ref.startswith(prefix)} - kept
    doc["components"]["schemas"] = {name: schemas[name] for name in sorted(kept)}
    return doc


def tidy_names(doc: dict[str, Any]) -> dict[str, Any]:
    """`Paged_list_app.http.schemas.tasks.ClaimOut__` (msgspec names a generic by its argument's repr) reads as
    `Paged_list_ClaimOut_`, unless two components would then share a name."""
    names = list(doc["components"]["schemas"])
    tidy = {name: _MODULE_PATH.sub("", name).replace("__", "_") for name in names}
    if len(set(tidy.values())) < len(names):
        return doc
    text = msgspec.json.encode(doc).decode()
    for old, new in tidy.items():
        text = text.replace(f'"{_SCHEMA.format(name=old)}"', f'"{_SCHEMA.format(name=new)}"')
    doc = msgspec.json.decode(text)
    doc["components"]["schemas"] = {tidy[name]: schema for name, schema in sorted(doc["components"]["schemas"].items())}
    return doc


_MODULE_PATH = re.compile(r"(?<![A-Za-z])(?:[a-z]+\.)+(?=[A-Z])")
