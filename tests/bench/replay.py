"""pgbench replaying the SQL Agora issued for a write scenario: the database's own ceiling for that request.

From the requests captured by `tests/bench/capture_app.py` (in rollback mode, so the database is still in the state
they were captured from) this builds one pgbench script with the statements of the most common request shape, in
the same round trips (a pipeline stays a `\\startpipeline` block), run with `-M prepared` as psycopg prepares
repeated statements. Per request only the parameter values change: values that are the same in every captured
request are passed as pgbench variables (`-D`); the others come from an unlogged table, one row per captured
request, read by one primary-key lookup at the start of each transaction (`\\gset`). Every captured request is
replayed exactly once (client c takes rows c*per_client+1 ...), and each commits, so the replay does the work
the service did.

The lookup is not the service's work: a pgbench run of the lookup alone measures its cost, which is taken off
(ceiling = 1 / (1/replay_tps - 1/lookup_tps)); that makes the ceiling higher, never lower, than the raw replay.
"""

from __future__ import annotations

import io
import json
import re
import statistics
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

CLIENTS = 32
THREADS = 2
NULL = "\\N"  # a \gset of NULL yields an empty string: NULLs travel as this marker instead


@dataclass
class Shape:
    """What the captured requests of a scenario have in common, and how many of them had it."""

    steps: list[list[str]]  # per round trip, the statements' SQL with $n placeholders
    oids: list[list[list[int]]]
    rows: list[list[list[dict]]]  # per request, per step, per statement: values, and result/columns if one row
    others: int  # captured requests of another shape (left out)

    @property
    def statements(self) -> int:
        return sum(len(step) for step in self.steps)

    @property
    def round_trips(self) -> int:
        return len(self.steps)


def load_shape(capture_file: Path) -> Shape:
    requests = [json.loads(line) for line in capture_file.read_text().splitlines() if line.strip()]
    if not requests:
        raise SystemExit(f"bench: nothing was captured in {capture_file}")
    signature = lambda r: tuple(tuple(s["sql"] for s in step) for step in r["steps"])  # noqa: E731
    counts = Counter(signature(r) for r in requests)
    common, _ = counts.most_common(1)[0]
    chosen = [r for r in requests if signature(r) == common]
    first = chosen[0]["steps"]
    return Shape(
        steps=[[s["sql"] for s in step] for step in first],
        oids=[[s["oids"] for s in step] for step in first],
        rows=[r["steps"] for r in chosen],
        others=len(requests) - len(chosen),
    )


@dataclass
class Script:
    table: str
    text: str
    lookup_text: str
    constants: dict[str, str]
    rows: int
    per_client: int


#: psycopg sends a Python int as the smallest integer type that holds it; a replayed value may not fit there.
_WIDER = {"smallint": "bigint", "integer": "bigint", "smallint[]": "bigint[]", "integer[]": "bigint[]"}


def _type_names(connection: psycopg.Connection, oids: set[int]) -> dict[int, str]:
    names = {}
    for oid in oids - {0}:
        (names[oid],) = connection.execute("SELECT %s::regtype::text", (oid,)).fetchone()
    return names


_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_INT_ARRAY = re.compile(r"\{(-?\d+(,-?\d+)*)?\}")


def _embedded(row: list, after: int, value: str | None) -> bool:
    """Whether `value` (a number) is written inside a later statement's text parameter (a JSON document: events
    naming the new task). A read-back could not reach it there, so the value is then replayed as captured: the
    captured transaction was rolled back, so the id is free, and every captured request is replayed once."""
    if value is None or not value.lstrip("-").isdigit():
        return False
    number = re.compile(rf"(?<![\d.]){re.escape(value)}(?![\d.])")
    return any(
        parameter != value and parameter is not None and number.search(parameter)
        for step in row[after + 1 :]
        for statement in step
        for parameter in statement["values"]
    )


class _Values:
    """Turns each parameter of the captured statements into a pgbench expression.

    A value that is the same in every request becomes a `-D` constant; one that equals what an earlier statement
    of the same request returned (a new id: the captured transaction was rolled back, so it no longer exists) is
    read back with `\\gset`; any other comes from the per-request row. Integer arrays are taken apart, element by
    element, because they can carry a new id too (a transfer's accounts).
    """

    def __init__(self, shape: Shape, rows: list) -> None:
        self.shape, self.rows = shape, rows
        self.constants: dict[str, str] = {}
        self.columns: list[tuple[str, Callable[[list], str | None]]] = []
        self.read_back: set[int] = set()  # steps whose row is read with \gset

    def _producer(self, before: int, seen: list[str | None], *, use: bool = True) -> str | None:
        if seen[0] is None or all(value == seen[0] for value in seen):
            return None
        for s in range(before):
            if len(self.shape.steps[s]) != 1 or not all("result" in row[s][0] for row in self.rows):
                continue
            names = self.rows[0][s][0]["columns"]
            for c, column in enumerate(names):
                if (
                    _NAME.fullmatch(column)
                    and names.count(column) == 1
                    and all(row[s][0]["result"][c] == value for row, value in zip(self.rows, seen, strict=True))
                    and not any(_embedded(row, s, value) for row, value in zip(self.rows, seen, strict=True))
                ):
                    if use:
                        self.read_back.add(s)
                    return f":r{s}_{column}"
        return None

    def _scalar(self, name: str, seen: list[str | None], get: Callable[[list], str | None], before: int) -> str:
        if all(value == seen[0] for value in seen):
            if seen[0] is None:
                return "NULL"
            self.constants[name] = seen[0]
            return f"(:{name})"
        produced = self._producer(before, seen)
        if produced:
            return f"({produced})"
        self.columns.append((name, get))
        return f"(:{name})" if None not in seen else f"nullif(:{name}, '{NULL}')"

    def expression(self, s: int, q: int, p: int, type_name: str) -> str:
        name = f"v{s}_{q}_{p + 1}"
        seen = [row[s][q]["values"][p] for row in self.rows]
        if any(value != seen[0] for value in seen):
            type_name = _WIDER.get(type_name, type_name)
        cast = f"::{type_name}" if type_name else ""
        if type_name.endswith("[]") and all(_INT_ARRAY.fullmatch(value or "") for value in seen):
            width = {value.count(",") for value in seen}
            elements = lambda i: [value[1:-1].split(",")[i] for value in seen]  # noqa: E731
            if (
                seen[0] != "{}"
                and len(width) == 1
                and any(self._producer(s, elements(i), use=False) for i in range(seen[0].count(",") + 1))
            ):
                parts = []
                for i in range(seen[0].count(",") + 1):
                    get = lambda row, s=s, q=q, p=p, i=i: row[s][q]["values"][p][1:-1].split(",")[i]  # noqa: E731
                    parts.append(self._scalar(f"{name}_{i}", elements(i), get, s) + f"::{type_name[:-2]}")
                return f"ARRAY[{', '.join(parts)}]{cast}"
        get = lambda row, s=s, q=q, p=p: row[s][q]["values"][p]  # noqa: E731
        return self._scalar(name, seen, get, s) + cast


def build(connection: psycopg.Connection, shape: Shape, table: str) -> Script:
    """Create the values table and the pgbench script (and its lookup-only twin) for `shape`."""
    per_client = len(shape.rows) // CLIENTS
    if per_client < 1:
        raise SystemExit(f"bench: {len(shape.rows)} captured requests cannot feed {CLIENTS} pgbench clients")
    rows = shape.rows[: per_client * CLIENTS]
    types = _type_names(connection, {oid for step in shape.oids for oids in step for oid in oids})
    values = _Values(shape, rows)
    steps: list[list[str]] = []
    for s, step in enumerate(shape.steps):
        statements = []
        for q, sql in enumerate(step):
            if "$$" in sql or re.search(r"(?<!:):[A-Za-z_]", sql):
                raise SystemExit(f"bench: cannot replay a statement pgbench would misread: {sql[:200]}")
            found = {p + 1: values.expression(s, q, p, types.get(oid, "")) for p, oid in enumerate(shape.oids[s][q])}
            statement = re.sub(r"\$(\d+)", lambda m, found=found: found[int(m.group(1))], sql)
            statements.append(statement.rstrip().rstrip(";"))
        steps.append(statements)
    lines = []
    for s, statements in enumerate(steps):
        if len(statements) > 1:
            lines += ["\\startpipeline", *(f"{sql};" for sql in statements), "\\endpipeline"]
        else:
            lines.append(statements[0] + (f" \\gset r{s}_" if s in values.read_back else ";"))
    names = [name for name, _ in values.columns]
    values_table(
        connection,
        table,
        names,
        ([NULL if (v := get(row)) is None else v for _, get in values.columns] for row in rows),
    )
    header = lookup_header(table, names, per_client)
    return Script(
        table=table,
        text="\n".join(header + lines) + "\n",
        lookup_text="\n".join(header) + "\n",
        constants=values.constants,
        rows=len(rows),
        per_client=per_client,
    )


def values_table(connection: psycopg.Connection, table: str, names: list[str], rows: Iterable[list[str]]) -> None:
    """The per-request values, one row each (numbered from 0), as text: pgbench substitutes them as text."""
    connection.execute(f"DROP TABLE IF EXISTS {table}")
    spec = "".join(f", {name} text" for name in names)
    connection.execute(f"CREATE UNLOGGED TABLE {table} (n integer PRIMARY KEY{spec})")
    with connection.cursor().copy(f"COPY {table} (n{''.join(', ' + c for c in names)}) FROM STDIN") as copy:
        for n, row in enumerate(rows):
            copy.write_row([n, *row])
    connection.execute(f"VACUUM ANALYZE {table}")


def lookup_header(table: str, names: list[str], per_client: int) -> list[str]:
    """The script lines that read this transaction's row of the values table into pgbench variables (and `n`):
    client c takes rows c*per_client ... (c+1)*per_client - 1, so every row is used exactly once."""
    return [
        "\\set k :k + 1",
        f"\\set n :client_id * {per_client} + :k",
        f"SELECT {', '.join(names) or '1 AS unused'} FROM {table} WHERE n = :n \\gset",
    ]


@dataclass
class PgbenchResult:
    tps: float
    transactions: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    output: str


def pgbench(url: str, script_text: str, constants: dict[str, str], per_client: int, folder: Path) -> PgbenchResult:
    script = folder / "pgbench.sql"
    script.write_text(script_text)
    for old in folder.glob("pgbench_log*"):
        old.unlink()
    command = ["pgbench", "-n", "-M", "prepared", "-c", str(CLIENTS), "-j", str(THREADS), "-t", str(per_client)]
    command += ["-D", "k=-1", "-l", "--log-prefix", str(folder / "pgbench_log"), "-f", str(script)]
    for name, value in constants.items():
        command += ["-D", f"{name}={value}"]
    finished = subprocess.run([*command, url], capture_output=True, text=True)
    output = finished.stdout + finished.stderr
    if finished.returncode != 0 or "aborted" in output:
        raise SystemExit(f"bench: pgbench failed:\n{output[-3000:]}\nscript {script}:\n{script_text[:6000]}")
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", output).group(1))
    processed = int(re.search(r"actually processed: (\d+)", output).group(1))
    failed_match = re.search(r"number of failed transactions: (\d+)", output)
    latencies = sorted(
        int(line.split()[2]) / 1000 for log in folder.glob("pgbench_log*") for line in log.read_text().splitlines()
    )
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 3) if latencies else None  # noqa: E731
    return PgbenchResult(
        tps=tps,
        transactions=processed,
        failed=int(failed_match.group(1)) if failed_match else 0,
        p50_ms=pick(0.5),
        p99_ms=pick(0.99),
        max_ms=round(latencies[-1], 3) if latencies else None,
        output=output,
    )


@dataclass
class Ceiling:
    raw: PgbenchResult  # the pgbench run itself, the per-request lookup included
    lookup_tps: float
    tps: float  # the run with the lookup's cost taken off
    statements: int
    round_trips: int
    requests: int
    others: int = 0  # captured requests of another shape, left out of the replay


def run_once_each(
    url: str, text: str, lookup_text: str, constants: dict[str, str], rows: int, per_client: int, folder: Path
) -> tuple[PgbenchResult, float, float]:
    """Run `text` once per row of its values table, every transaction committed, then the lookup alone (which
    changes nothing, three times); returns the run, the lookup's rate and the run's rate without the lookup."""
    result = pgbench(url, text, constants, per_client, folder)
    if result.failed or result.transactions != rows:
        raise SystemExit(f"bench: pgbench ran {result.transactions} of {rows} transactions:\n{result.output}")
    lookup_tps = statistics.median(pgbench(url, lookup_text, {}, per_client, folder).tps for _ in range(3))
    spare = 1 / result.tps - 1 / lookup_tps
    return result, round(lookup_tps, 1), round(1 / spare, 1) if spare > 0 else result.tps


def replay(url: str, capture_file: Path, table: str, folder: Path) -> Ceiling:
    """Build and run the replay of `capture_file`, then the lookup alone."""
    shape = load_shape(capture_file)
    with psycopg.connect(url, autocommit=True) as connection:
        script = build(connection, shape, table)
    result, lookup_tps, tps = run_once_each(
        url, script.text, script.lookup_text, script.constants, script.rows, script.per_client, folder
    )
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {table}")
    return Ceiling(
        raw=result,
        lookup_tps=lookup_tps,
        tps=tps,
        statements=shape.statements,
        round_trips=shape.round_trips,
        requests=script.rows,
        others=shape.others,
    )


def describe(shape: Shape) -> str:
    """The replayed script's statements, one line each (for the report)."""
    out = io.StringIO()
    for s, step in enumerate(shape.steps):
        for sql in step:
            out.write(f"{s + 1}: {' '.join(sql.split())[:160]}\n")
    return out.getvalue()
