"""What every `agora` command shares: the database, a unit of work on it, the data key ring, the output."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from app.config import Settings, SettingsError
from app.crypto import KeyRing
from app.repo import migrate
from app.repo.database import load_keyring, resolve_database_url
from app.services import sealing
from app.services.uow import UnitOfWork, on_own_connection

T = TypeVar("T")


def database(settings: Settings) -> str:
    return resolve_database_url(settings)


async def with_uow(url: str, use_case: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    return await on_own_connection(url, use_case, name="agora-cli", statement_timeout_ms=60_000)


def run(settings: Settings, use_case: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    url = database(settings)
    migrate.upgrade(url)
    return asyncio.run(with_uow(url, use_case))


def keyring_of(settings: Settings) -> KeyRing:
    try:
        return load_keyring(settings)
    except SettingsError as error:
        raise SystemExit(f"agora: {error}") from None


def migrate_and_seal(settings: Settings) -> tuple[str, KeyRing]:
    """Migrate, then seal what migration 0006 left in plaintext: how every process that serves starts."""
    keyring = keyring_of(settings)  # first: a start refused for want of a key changes nothing
    url = database(settings)
    migrate.upgrade(url)
    report = asyncio.run(with_uow(url, lambda uow: sealing.seal_unsealed(uow.lease, keyring)))
    if report.total:
        print(f"sealed {report.total} stored secrets that migration 0006 left in plaintext", file=sys.stderr)
    return url, keyring


def emit(args: argparse.Namespace, record: dict[str, Any], *, key: str) -> None:
    """Print the record as JSON, then the key alone on the last line (easy to capture in scripts)."""
    print(json.dumps(record))
    print(key)
