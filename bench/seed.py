"""`python -m bench.seed --tasks N`: fill a fresh database with a deterministic synthetic marketplace, fast (COPY),
then audit its ledger. The database is AGORA_DATABASE_URL's, else the embedded one (as for `agora`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from app.config import load_settings
from app.repo import migrate
from app.repo.database import resolve_database_url
from app.services import audit
from app.services.uow import on_own_connection
from bench import copy_rows as seed_rows
from bench.dataset import CHUNK_TABLES, COLUMNS, Config, Dataset, Ids
from bench.progress import Progress


@dataclass(slots=True)
class SeedSummary:
    rows: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def seed(url: str, config: Config, *, progress: bool = True, drop_indexes: bool = True) -> SeedSummary:
    """Seed the database at `url` (migrated, holding no marketplace rows yet) in one transaction."""
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = timings.get(name, 0.0) + now - clock
        clock = now

    with seed_rows.connect(url) as connection:
        start = seed_rows.check_fresh(connection)
        dataset = Dataset(
            config,
            Ids(
                issuance_account=start.issuance_account,
                revenue_accounts=start.revenue_accounts,
                first_account=start.first_account,
                first_api_key=start.first_api_key,
            ),
        )
        display = Progress(dataset.expected_rows(), enabled=progress)
        lap("generate vocabulary")
        seed_rows.begin_bulk_load(connection)
        dropped = seed_rows.drop_secondary_indexes(connection) if drop_indexes else []
        seed_rows.search_trigger_during_load(connection, enabled=True)
        lap("drop indexes")

        rows: dict[str, int] = dict.fromkeys(COLUMNS, 0)

        def copy(table: str, table_rows: Iterable[Sequence[object]]) -> None:
            rows[table] += seed_rows.copy_rows(connection, table, COLUMNS[table], table_rows, display.add)

        copy("operator", dataset.operators())
        transfers, entries = dataset.grant_transfers_and_entries()
        copy("transfer", transfers)
        copy("entry", entries)
        for chunk in dataset.task_chunks():
            for table in CHUNK_TABLES:
                copy(table, chunk[table])
        copy("agent", dataset.agents())
        copy("api_key", dataset.api_keys())
        copy("account", dataset.wallet_accounts())
        seed_rows.set_platform_balances(connection, dataset.platform_accounts())
        seed_rows.search_trigger_during_load(connection, enabled=False)
        display.finish()
        lap("generate + COPY")

        if dropped:
            display.start_phase("indexes", len(dropped), unit="indexes")
            seed_rows.create_indexes(connection, dropped, lambda index: display.add("indexes", 1))
            display.finish()
        lap("index builds")
        seed_rows.reset_sequences(connection)
        seed_rows.end_bulk_load(connection)
        lap("commit")
        display.start_phase("vacuum analyze")
        seed_rows.analyze(connection)
        display.finish()
        lap("vacuum analyze")
        sizes = seed_rows.table_sizes(connection)
    return SeedSummary(rows=rows, seconds=timings, sizes=sizes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--operators", type=int, default=1000)
    parser.add_argument("--agents-per-operator", type=int, default=5)
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    try:
        config = Config(
            tasks=args.tasks, seed=args.seed, operators=args.operators, agents_per_operator=args.agents_per_operator
        )
    except ValueError as error:
        raise SystemExit(f"bench.seed: {error}") from None
    url = resolve_database_url(load_settings())
    migrate.upgrade(url)
    try:
        summary = seed(url, config, progress=not args.quiet)
    except seed_rows.NotEmpty as error:
        raise SystemExit(f"bench.seed: {error}") from None
    report = asyncio.run(on_own_connection(url, audit.run_audit, name="bench-seed", statement_timeout_ms=600_000))
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


if __name__ == "__main__":
    main()
