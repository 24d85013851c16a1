"""Bulk loading of a synthetic marketplace (the benchmark's data): the only SQL of `python -m bench.seed`.

One session, one transaction: `session_replication_role = replica` turns off the row triggers (the ledger's
`entry_apply`, balance guard and deferred balance checks, the outbox fan-out) and the foreign key checks for this
session only, because the rows arrive with every derived column already computed (balances, versions,
balance_after). The one trigger kept on is the search document's (see `search_trigger_during_load`). CHECK constraints and unique indexes still apply, and the ledger audit runs afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

# Tables the seed writes, in dependency order; nothing else may be named in a COPY.
SEEDED_TABLES = ("operator", "agent", "api_key", "account", "task", "claim", "deliverable", "transfer", "entry")
# The tables whose secondary indexes are dropped for the load and rebuilt afterwards.
REBUILT_TABLES = ("task", "claim", "deliverable", "account", "transfer", "entry")
SEQUENCE_TABLES = (*SEEDED_TABLES, "event", "webhook", "webhook_delivery", "webhook_attempt", "idempotency_key")


class NotEmpty(RuntimeError):
    """The database already holds marketplace rows; the seed only fills a fresh one."""


@dataclass(frozen=True, slots=True)
class Start:
    issuance_account: int
    revenue_accounts: tuple[int, ...]  # indexed by shard (domain.ledger.revenue_shard)
    first_account: int
    first_api_key: int


@dataclass(frozen=True, slots=True)
class DroppedIndex:
    name: str
    table: str
    definition: str


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=False, application_name="agora-bench-seed")


def check_fresh(connection: psycopg.Connection) -> Start:
    """Refuse a database with operators, agents, tasks or transfers; return where the new rows' ids start."""
    row = connection.execute(
        """
        SELECT (SELECT count(*) FROM (SELECT 1 FROM operator LIMIT 1) o)
             + (SELECT count(*) FROM (SELECT 1 FROM agent LIMIT 1) a)
             + (SELECT count(*) FROM (SELECT 1 FROM task LIMIT 1) t)
             + (SELECT count(*) FROM (SELECT 1 FROM transfer LIMIT 1) r),
               (SELECT id FROM account WHERE kind = 'platform_issuance'),
               (SELECT array_agg(id ORDER BY shard) FROM account WHERE kind = 'platform_revenue'),
               (SELECT coalesce(max(id), 0) + 1 FROM account),
               (SELECT coalesce(max(id), 0) + 1 FROM api_key)
        """
    ).fetchone()
    assert row is not None
    if row[0]:
        raise NotEmpty("the database already holds operators, agents, tasks or transfers; seed a fresh one")
    return Start(issuance_account=row[1], revenue_accounts=tuple(row[2]), first_account=row[3], first_api_key=row[4])


def begin_bulk_load(connection: psycopg.Connection, *, maintenance_work_mem: str = "512MB") -> None:
    connection.execute("SET session_replication_role = replica")
    connection.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(maintenance_work_mem)))
    connection.execute("SET synchronous_commit = off")


def drop_secondary_indexes(
    connection: psycopg.Connection, tables: Sequence[str] = REBUILT_TABLES
) -> list[DroppedIndex]:
    """Drop the indexes that back no constraint (primary keys and UNIQUE constraints stay), returning their exact
    definitions for `create_indexes`."""
    rows = connection.execute(
        """
        SELECT i.relname, t.relname, pg_get_indexdef(x.indexrelid)
          FROM pg_index x
          JOIN pg_class i ON i.oid = x.indexrelid
          JOIN pg_class t ON t.oid = x.indrelid
          JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = current_schema() AND t.relname = ANY(%s)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
         ORDER BY t.relname, i.relname
        """,
        (list(tables),),
    ).fetchall()
    dropped = [DroppedIndex(name, table, definition) for name, table, definition in rows]
    for index in dropped:
        connection.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index.name)))
    return dropped


def create_indexes(
    connection: psycopg.Connection, indexes: Iterable[DroppedIndex], on_index: Callable[[DroppedIndex], None]
) -> None:
    for index in indexes:
        connection.execute(index.definition)  # pg_get_indexdef's own text, as the migrations created it
        on_index(index)


def copy_rows(
    connection: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    on_rows: Callable[[str, int], None] | None = None,
    *,
    report_every: int = 10_000,
) -> int:
    """COPY `rows` into `table`; calls `on_rows(table, n)` every `report_every` rows and at the end."""
    if table not in SEEDED_TABLES:
        raise ValueError(f"{table} is not a seeded table")
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(column) for column in columns)
    )
    written = pending = 0
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        write_row = copy.write_row
        for row in rows:
            write_row(row)
            pending += 1
            if pending == report_every:
                written += pending
                if on_rows:
                    on_rows(table, pending)
                pending = 0
    written += pending
    if on_rows and pending:
        on_rows(table, pending)
    return written


def set_platform_balances(connection: psycopg.Connection, accounts: Iterable[tuple[int, int, int]]) -> None:
    """The platform accounts exist from the migration; give them their final (balance, version)."""
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE account SET balance = %s, version = %s WHERE id = %s", [(b, v, a) for a, b, v in accounts]
        )


def search_trigger_during_load(connection: psycopg.Connection, *, enabled: bool) -> None:
    """Let the migration's own `task_search_insert` trigger fill task.search during the COPY despite the replica
    role (ENABLE ALWAYS), then put it back to an ordinary trigger before commit. PostgreSQL then parses each task's
    text as it arrives, on its own core while Python generates the next rows, instead of in an UPDATE afterwards
    (which doubled the load's time and left a dead version of every task)."""
    mode = "ENABLE ALWAYS TRIGGER" if enabled else "ENABLE TRIGGER"
    connection.execute(f"ALTER TABLE task {mode} task_search_insert")


def reset_sequences(connection: psycopg.Connection, tables: Sequence[str] = SEQUENCE_TABLES) -> None:
    """Move every table's id sequence past its largest id, so the service's inserts continue after the seed."""
    for table in tables:
        connection.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({table_text}, 'id'), coalesce(max(id), 0) + 1, false) FROM {table}"
            ).format(table_text=sql.Literal(table), table=sql.Identifier(table))
        )


def end_bulk_load(connection: psycopg.Connection) -> None:
    connection.execute("RESET session_replication_role")
    connection.commit()


def analyze(connection: psycopg.Connection, tables: Sequence[str] = SEEDED_TABLES) -> None:
    """VACUUM (sets the visibility map, so that index-only scans work from the start) and ANALYZE."""
    connection.autocommit = True
    try:
        for table in tables:
            connection.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    finally:
        connection.autocommit = False


def row_counts(connection: psycopg.Connection, tables: Sequence[str] = SEEDED_TABLES) -> dict[str, int]:
    return {
        table: connection.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
        for table in tables
    }


def table_sizes(connection: psycopg.Connection, tables: Sequence[str] = SEEDED_TABLES) -> dict[str, tuple[int, int]]:
    """(heap bytes, total bytes with indexes and TOAST) per table."""
    return {
        table: connection.execute(
            "SELECT pg_table_size(%s::regclass), pg_total_relation_size(%s::regclass)", (table, table)
        ).fetchone()
        for table in tables
    }
