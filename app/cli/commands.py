"""`agora`: run and administer the service without HTTP, on the same settings and database as the server."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from app.cli import data_keys
from app.cli.common import database, emit, migrate_and_seal, run
from app.config import Settings, SettingsError, load_settings
from app.repo import migrate
from app.services import admin, credits, operators
from app.services.agents import AgentProfile


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> None:
    url, _ = migrate_and_seal(settings)
    print(f"database at revision {migrate.current_revision(url)}")


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from app.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    url, keyring = migrate_and_seal(settings)  # the embedded server stays up while this process lives
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
    url, keyring = migrate_and_seal(settings)
    settings = settings.with_overrides(secret_key=keyring.to_text())
    asyncio.run(run_standalone(settings, url, webhook_client(settings), once=args.once))


def cmd_create_admin_key(settings: Settings, args: argparse.Namespace) -> None:
    plaintext = run(settings, lambda uow: admin.create_admin_key(uow, name=args.name))
    print(f"Admin key '{args.name}' created. It is shown once; store it now:")
    print(plaintext)


def cmd_create_operator(settings: Settings, args: argparse.Namespace) -> None:
    created = run(settings, lambda uow: operators.create_operator(uow, name=args.name))
    emit(
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
    created = run(settings, lambda uow: operators.create_agent(uow, operator_id=args.operator, profile=profile))
    emit(
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
    posted = run(
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

    report = run(settings, audit.run_audit)
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


def cmd_database_url(settings: Settings, args: argparse.Namespace) -> None:
    print(database(settings))


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

    data_keys.add_commands(commands)

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
