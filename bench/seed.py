"""`agora bench seed`: fill a fresh database with a deterministic synthetic marketplace, fast (COPY)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from app.bench.dataset import CHUNK_TABLES, COLUMNS, Config, Dataset, Ids
from app.bench.progress import Progress
from app.repo import seed as seed_rows


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
                revenue_account=start.revenue_account,
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
