"""`agora`: run and administer the service without HTTP, on the same settings and database as the server."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from app.config import Settings, SettingsError, load_settings
from app.crypto import KeyRing, SealError, new_key_entry
from app.repo import migrate
from app.repo.connections import ConnectionLease, PoolSource, open_pool
from app.repo.database import load_keyring, resolve_database_url
from app.services import admin, credits, operators, sealing
from app.services.agents import AgentProfile
from app.services.uow import UnitOfWork

T = TypeVar("T")


def _database(settings: Settings) -> str:
    return resolve_database_url(settings)


async def _with_uow(url: str, use_case: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    pool = open_pool(url, min_size=1, max_size=1, statement_timeout_ms=60_000, name="agora-cli")
    await pool.open(wait=True)
    lease = ConnectionLease(PoolSource(pool))
    try:
        return await use_case(UnitOfWork(lease))
    finally:
        await lease.release()
        await pool.close()


def _run(settings: Settings, use_case: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    url = _database(settings)
    migrate.upgrade(url)
    return asyncio.run(_with_uow(url, use_case))


def _keyring(settings: Settings) -> KeyRing:
    try:
        return load_keyring(settings)
    except SettingsError as error:
        raise SystemExit(f"agora: {error}") from None


def _migrate_and_seal(settings: Settings) -> tuple[str, KeyRing]:
    """Migrate, then seal what migration 0006 left in plaintext: how every process that serves starts."""
    keyring = _keyring(settings)  # first: a start refused for want of a key changes nothing
    url = _database(settings)
    migrate.upgrade(url)
    report = asyncio.run(_with_uow(url, lambda uow: sealing.seal_unsealed(uow.lease, keyring)))
    if report.total:
        print(f"sealed {report.total} stored secrets that migration 0006 left in plaintext", file=sys.stderr)
    return url, keyring


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> None:
    url, _ = _migrate_and_seal(settings)
    print(f"database at revision {migrate.current_revision(url)}")


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from app.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    url, keyring = _migrate_and_seal(settings)  # the embedded server stays up while this process lives
    os.environ["AGORA_DATABASE_URL"] = url  # workers join the same database instead of starting their own
    os.environ["AGORA_SECRET_KEY"] = keyring.to_text()  # ... and seal and open with the same key ring
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    workers = args.workers or settings.workers
    print(f"Agora serving on http://{host}:{port} (OpenAPI at /schema)", file=sys.stderr, flush=True)
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; exiting through SystemExit instead lets the
    # exit hooks run, among them the one that stops the embedded PostgreSQL when this was its last user.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda number, frame: sys.exit(0))
    uvicorn.run(
        "app.main:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
        # uvicorn would take X-Forwarded-For from any local peer; app.network believes only AGORA_TRUSTED_PROXIES.
        proxy_headers=False,
    )


def cmd_worker(settings: Settings, args: argparse.Namespace) -> None:
    from app.logging import configure_logging
    from app.main import webhook_client
    from app.workers.webhook_dispatcher import run_standalone

    configure_logging(settings.log_level, settings.log_format)
    url, keyring = _migrate_and_seal(settings)
    settings = settings.with_overrides(secret_key=keyring.to_text())
    asyncio.run(run_standalone(settings, url, webhook_client(settings), once=args.once))


def cmd_create_admin_key(settings: Settings, args: argparse.Namespace) -> None:
    plaintext = _run(settings, lambda uow: admin.create_admin_key(uow, name=args.name))
    print(f"Admin key '{args.name}' created. It is shown once; store it now:")
    print(plaintext)


def cmd_create_operator(settings: Settings, args: argparse.Namespace) -> None:
    created = _run(settings, lambda uow: operators.create_operator(uow, name=args.name))
    _emit(
        args,
        {
            "id": created.operator.id,
            "name": created.operator.name,
            "credit_balance": created.credit_balance,
            "api_key": created.api_key,
        },
        key=created.api_key,
    )


def cmd_create_agent(settings: Settings, args: argparse.Namespace) -> None:
    profile = AgentProfile(args.name, args.description, tuple(args.capability or ()), tuple(args.category or ()))
    created = _run(settings, lambda uow: operators.create_agent(uow, operator_id=args.operator, profile=profile))
    _emit(
        args,
        {
            "id": created.agent.id,
            "name": created.agent.name,
            "operator_id": args.operator,
            "api_key": created.api_key,
        },
        key=created.api_key,
    )


def cmd_grant(settings: Settings, args: argparse.Namespace) -> None:
    posted = _run(
        settings,
        lambda uow: credits.adjust_operator(uow, operator_id=args.operator, amount=args.amount, reason=args.reason),
    )
    print(
        json.dumps(
            {
                "transfer_id": posted.transfer_id,
                "operator_id": args.operator,
                "amount": posted.amount,
                "balance_after": posted.balance_after,
            }
        )
    )


def cmd_audit(settings: Settings, args: argparse.Namespace) -> None:
    from app.services import audit

    report = _run(settings, audit.run_audit)
    print(
        json.dumps(
            {
                "ok": report.ok,
                "violations": report.violations,
                "entries": report.entries,
                "ledger_hash": report.ledger_hash,
            },
            indent=2,
        )
    )
    if not report.ok:
        raise SystemExit(1)


def cmd_bench_seed(settings: Settings, args: argparse.Namespace) -> None:
    from app.bench.dataset import Config
    from app.repo.seed import NotEmpty
    from app.services import audit, seed

    try:
        config = Config(
            tasks=args.tasks, seed=args.seed, operators=args.operators, agents_per_operator=args.agents_per_operator
        )
    except ValueError as error:
        raise SystemExit(f"agora: {error}") from None
    url = _database(settings)
    migrate.upgrade(url)
    try:
        summary = seed.seed(url, config, progress=not args.quiet)
    except NotEmpty as error:
        raise SystemExit(f"agora: {error}") from None
    report = asyncio.run(_with_uow(url, audit.run_audit))
    print(
        json.dumps(
            {
                "tasks": config.tasks,
                "seed": config.seed,
                "rows": summary.rows,
                "seconds": {name: round(value, 1) for name, value in summary.seconds.items()},
                "total_seconds": round(summary.total_seconds, 1),
                "table_mb_heap_total": {
                    name: [round(heap / 2**20, 1), round(total / 2**20, 1)]
                    for name, (heap, total) in summary.sizes.items()
                },
                "audit": {"ok": report.ok, "violations": report.violations, "entries": report.entries},
            },
            indent=2,
        )
    )
    if not report.ok:
        raise SystemExit(1)


def cmd_secrets_new_key(settings: Settings, args: argparse.Namespace) -> None:
    print(new_key_entry())


def cmd_secrets_status(settings: Settings, args: argparse.Namespace) -> None:
    keyring = _keyring(settings)
    url = _database(settings)
    migrate.upgrade(url)
    census = asyncio.run(_with_uow(url, lambda uow: sealing.census(uow.lease)))
    used = {key for counts in census.values() for key in counts}
    unused = [key_id for key_id in keyring.key_ids[1:] if key_id not in used]
    print(json.dumps({"sealing_key": keyring.primary_id, "values": census, "unused_keys": unused}, indent=2))


def cmd_secrets_rotate(settings: Settings, args: argparse.Namespace) -> None:
    """Re-seal everything under the ring's first key. With the data folder's key file: a new key first, then the
    re-seal, then the old keys dropped. With AGORA_SECRET_KEY: the operator put the new key first; we re-seal and
    name the old keys that nothing uses any more."""
    from app.repo.database import embedded_users, key_file, uses_key_file, write_key_file

    keyring = _keyring(settings)
    url = _database(settings)
    migrate.upgrade(url)
    in_file = uses_key_file(settings)
    if in_file:
        if users := embedded_users(settings):
            raise SystemExit(
                f"agora: stop the processes using this data folder first (pids {users}): a running server keeps "
                "the old key ring in memory, so it would seal new values under the old key and not open the new ones"
            )
        keyring = keyring.with_new_key()
        write_key_file(key_file(settings), keyring.to_text(separator="\n") + "\n")
    try:
        report = asyncio.run(_with_uow(url, lambda uow: sealing.reseal_all(uow.lease, keyring)))
    except SealError as error:  # e.g. a value under a key already removed from AGORA_SECRET_KEY
        raise SystemExit(f"agora: {error}") from None
    used = report.key_ids_in_use()
    old = list(keyring.key_ids[1:])
    summary = {"sealing_key": keyring.primary_id, "resealed": report.resealed, "values": report.census}
    if used - {keyring.primary_id}:  # written meanwhile by a process that still seals with an old key
        print(json.dumps({**summary, "old_keys_still_used": sorted(used - {keyring.primary_id})}, indent=2))
        raise SystemExit("agora: some values are still sealed under old keys; restart every process, then run again")
    if in_file:
        write_key_file(key_file(settings), keyring.only_primary().to_text() + "\n")
        print(json.dumps({**summary, "dropped_keys": old}, indent=2))
    else:
        print(json.dumps({**summary, "unused_keys": old}, indent=2))
        if old:
            print(f"Nothing is sealed under {', '.join(old)} now: remove them from AGORA_SECRET_KEY.", file=sys.stderr)


def cmd_database_url(settings: Settings, args: argparse.Namespace) -> None:
    print(_database(settings))


def cmd_openapi(settings: Settings, args: argparse.Namespace) -> None:
    from app.http.openapi import document
    from app.http.routes.docs import errors_markdown
    from app.main import create_app

    text = json.dumps(document(create_app(settings)), indent=2, sort_keys=True) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    if args.errors:  # the error catalogue, from the same table as the document's error responses
        Path(args.errors).write_text(errors_markdown())
        print(f"wrote {args.errors}", file=sys.stderr)


def _emit(args: argparse.Namespace, record: dict[str, Any], *, key: str) -> None:
    """Print the record as JSON, then the key alone on the last line (easy to capture in scripts)."""
    print(json.dumps(record))
    print(key)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="agora", description="Run and administer the Agora marketplace backend.")
    commands = root.add_subparsers(dest="command", required=True)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)

    serve = commands.add_parser("serve", help="migrate, then serve the API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(run=cmd_serve)

    worker = commands.add_parser("worker", help="run a webhook delivery worker (no HTTP) until stopped")
    worker.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
    worker.set_defaults(run=cmd_worker)

    admin_cmd = commands.add_parser("admin", help="admin keys").add_subparsers(dest="admin_command", required=True)
    create_key = admin_cmd.add_parser("create-key", help="create an admin key (printed last)")
    create_key.add_argument("--name", required=True)
    create_key.set_defaults(run=cmd_create_admin_key)

    ops = commands.add_parser("operators", help="operators").add_subparsers(dest="operators_command", required=True)
    op_create = ops.add_parser("create", help="create an operator (its key is printed last)")
    op_create.add_argument("--name", required=True)
    op_create.set_defaults(run=cmd_create_operator)

    agents = commands.add_parser("agents", help="agents").add_subparsers(dest="agents_command", required=True)
    agent_create = agents.add_parser("create", help="create an agent for an operator (its key is printed last)")
    agent_create.add_argument("--operator", type=int, required=True)
    agent_create.add_argument("--name", required=True)
    agent_create.add_argument("--description", default="An Agora agent")
    agent_create.add_argument("--capability", action="append")
    agent_create.add_argument("--category", type=int, action="append")
    agent_create.set_defaults(run=cmd_create_agent)

    creds = commands.add_parser("credits", help="credits").add_subparsers(dest="credits_command", required=True)
    grant = creds.add_parser("grant", help="grant (or, negative, debit) an operator's wallet")
    grant.add_argument("--operator", type=int, required=True)
    grant.add_argument("--amount", type=int, required=True)
    grant.add_argument("--reason", default="Granted from the command line")
    grant.set_defaults(run=cmd_grant)

    commands.add_parser("audit", help="check the ledger's invariants; exits 1 on any violation").set_defaults(
        run=cmd_audit
    )

    bench = commands.add_parser("bench", help="benchmark").add_subparsers(dest="bench_command", required=True)
    bench_seed = bench.add_parser(
        "seed", help="fill a fresh database with a deterministic synthetic marketplace (COPY), then audit it"
    )
    bench_seed.add_argument("--tasks", type=int, required=True)
    bench_seed.add_argument("--seed", type=int, default=1)
    bench_seed.add_argument("--operators", type=int, default=1000)
    bench_seed.add_argument("--agents-per-operator", type=int, default=5)
    bench_seed.add_argument("--quiet", action="store_true", help="no progress display")
    bench_seed.set_defaults(run=cmd_bench_seed)

    keys = commands.add_parser("secrets", help="the data key that seals secrets at rest").add_subparsers(
        dest="secrets_command", required=True
    )
    keys.add_parser("new-key", help="print a new random data key entry for AGORA_SECRET_KEY").set_defaults(
        run=cmd_secrets_new_key
    )
    keys.add_parser("status", help="how many stored values each key seals").set_defaults(run=cmd_secrets_status)
    keys.add_parser(
        "rotate", help="re-seal every stored secret under the first key (the data folder's: a new key), drop the old"
    ).set_defaults(run=cmd_secrets_rotate)

    db = commands.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    db.add_parser("url", help="print the database URL (starting the embedded server if needed)").set_defaults(
        run=cmd_database_url
    )

    openapi = commands.add_parser("openapi", help="write the OpenAPI document (and the error catalogue)")
    openapi.add_argument("--output", default="openapi/openapi.json")
    openapi.add_argument("--errors", default="", help="also write docs/errors.md here")
    openapi.set_defaults(run=cmd_openapi)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        raise SystemExit(f"agora: {error}") from None
    try:
        args.run(settings, args)
    except Exception as error:  # a domain error from a command is a message, not a traceback
        from domain.errors import DomainError

        if isinstance(error, DomainError):
            raise SystemExit(f"agora: {error.code}: {error.message}") from None
        raise


if __name__ == "__main__":
    main()
