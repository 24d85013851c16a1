"""Every error code raised anywhere in the code base is in the catalogue (domain/error_codes.py), raised with a
kind that gives it the catalogue's status; so docs/errors.md and the OpenAPI document cannot miss one."""

from __future__ import annotations

import ast
from pathlib import Path

import domain.errors
from app.http.errors import status_for, status_of_kind
from domain.error_codes import CATALOGUE
from domain.errors import DomainError

ROOT = Path(__file__).resolve().parents[2]
KINDS: dict[str, type[DomainError]] = {
    name: value
    for name, value in vars(domain.errors).items()
    if isinstance(value, type) and issubclass(value, DomainError)
}


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _code_keyword(call: ast.Call) -> str | None:
    for keyword in call.keywords:
        if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def raised_codes() -> list[tuple[str, str, int]]:
    """(where, code, status of the kind it is raised with) for every code literal in app/ and domain/."""
    found = []
    for path in sorted([*ROOT.glob("app/**/*.py"), *ROOT.glob("domain/**/*.py")]):
        if path.name == "error_codes.py":
            continue
        tree = ast.parse(path.read_text())
        kinds = dict(KINDS)
        for node in ast.walk(tree):  # classes defined in the file (IdempotencyKeyInFlight(Conflict), ...)
            if isinstance(node, ast.ClassDef):
                bases = [kinds[b] for b in map(_name, node.bases) if b in kinds]
                if bases:
                    kinds[node.name] = KINDS.get(node.name) or type(node.name, (bases[0],), {})
                    for item in node.body:
                        if (
                            isinstance(item, ast.Assign)
                            and [_name(t) for t in item.targets] == ["code"]
                            and isinstance(item.value, ast.Constant)
                        ):
                            found.append((f"{path}:{node.name}", item.value.value, status_of_kind(kinds[node.name])))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) in kinds:
                kind = kinds[_name(node.func)]
                # Without code=..., the kind's own code (DOMAIN_ERROR, refused below, for a bare NotFound).
                code = _code_keyword(node) or (kind.code if _name(node.func) in KINDS else None)
                if code:
                    found.append((f"{path}:{node.lineno}", code, status_of_kind(kind)))
            # The envelope builder `error("CODE", ...)` (not `log.error(...)`): every code should come from the table.
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "error" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.append((f"{path}:{node.lineno}", first.value, -1))  # a raw code: refuse below
    return found


def test_the_scan_finds_the_raise_sites():
    codes = {code for _, code, _ in raised_codes()}
    assert {"TASK_NOT_FOUND", "SELF_CLAIM", "IDEMPOTENCY_KEY_TOO_LONG", "WEBHOOK_URL_FORBIDDEN"} <= codes


def test_every_raised_code_is_catalogued_with_its_status():
    for where, code, status in raised_codes():
        assert code in CATALOGUE, f"{where}: {code} is not in domain/error_codes.py"
        assert status == status_for(CATALOGUE[code]), f"{where}: {code} answers {status}, the catalogue says"


def test_every_kind_has_a_status_and_its_default_code_is_catalogued():
    for name, kind in KINDS.items():
        if kind.code != DomainError.code:
            assert kind.code in CATALOGUE, name
            assert status_of_kind(kind) == status_for(CATALOGUE[kind.code]), name
