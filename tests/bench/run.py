"""`make bench`: Agora's read and write scenarios against their ceilings, measured side by side in one run.

    .venv/bin/python -m tests.bench.run [--tasks N] [--duration S] [--warmup S] [--processes 1,2] [--repeat R]

1. An embedded PostgreSQL of its own (`bench/.data/` unless --data-dir), seeded once per task count with
   `python -m bench.seed` (a marker file remembers the count). Every repetition runs on a fresh copy of that database
   (CREATE DATABASE ... TEMPLATE), so the writes of one run never change what the next one measures.
2. The write ceilings: for each write scenario, Agora under `tests/bench/capture_app.py` answers a few thousand of
   the scenario's requests with every COMMIT turned into ROLLBACK, recording its SQL; pgbench then replays exactly
   those statements, round trips and values, each request once, committing (`tests/bench/replay.py`). Then, on
   the same copy, pgbench runs the scenario's minimal transaction (`bench/minimal/<scenario>.sql`, the least SQL a
   correct implementation sends) for as many fresh targets, each once (`tests/bench/minimal.py`).
3. For each API process count: Agora under uvicorn (`--workers N --loop uvloop --http httptools`) for every read
   and write scenario, then the ceiling app (`tests/bench/ceiling_app.py`: the same rows from one raw psycopg query,
   no auth; and a plain JSON endpoint) with the same server flags. Every scenario: a warm-up, then
   `wrk -t2 -c32 -d{duration}s --latency`; write requests are chosen from the database just before their run and
   each is sent once. Each of Agora's read scenarios then runs again with 4 connections (`-c4`, no warm-up: the
   server just served it), for latency without queueing on two cores.
4. Webhook fan-out: `agora worker` processes draining deliveries to a local receiver (`tests/bench/fanout.py`).
5. The median of the repetitions per row, a table (req/s, p50, p99, max, statements and round trips per request,
   ratio to the ceiling, peak RSS per process, wrk's own CPU), the targets of issue 5 checked, written to
   `bench/results/<date>-<sha>.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from app.crypto import KeyRing, new_key_entry
from app.repo import migrate
from app.repo.database import embedded_server_url
from tests.bench import minimal, reads, replay, writes
from tests.bench.load import (
    CONNECTIONS,
    LATENCY_CONNECTIONS,
    ROOT,
    THREADS,
    WRK,
    Run,
    Server,
    background_busy_pct,
    measure,
    preflight,
    start_server,
)
from tests.bench.report import git_sha, machine, median_runs, row_name, table, targets, versions, write_results

DATABASE = "agora_bench"
RUN_DATABASE = "agora_bench_run"
SHARED_BUFFERS = "1GB"
# The servers' data key: the one the caller set, else one made for this run. The harness mints the deep page's
# cursors under it, as the server would.
SECRET_KEY = os.environ.get("AGORA_SECRET_KEY") or new_key_entry()
WRITE_HEADROOM = 1.5  # a write run prepares requests for this times its ceiling's rate (see measure_writes)
RATE_LIMIT_PER_MINUTE = 1_000_000  # per agent: high enough never to refuse, counted on every request all the same


# ---------------------------------------------------------------------------------------------------- the dataset


def database_url(data_dir: Path) -> str:
    return embedded_server_url(data_dir / "pg", database=DATABASE)


def ensure_seeded(data_dir: Path, tasks: int) -> str:
    """The benchmark database, seeded with `tasks` tasks (re-seeded from scratch if it holds another count)."""
    url = database_url(data_dir)
    marker = data_dir / "seeded.json"
    wanted = {"tasks": tasks, "seed": 1, "database": DATABASE}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        migrate.upgrade(url)  # a dataset seeded before the latest migration gets it (indexes, functions)
        return url
    marker.unlink(missing_ok=True)
    admin = urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{DATABASE}"')
    print(f"seeding {tasks:,} tasks into {data_dir} (once per task count) ...", flush=True)
    command = [sys.executable, "-m", "bench.seed", "--tasks", str(tasks)]
    if not sys.stderr.isatty():
        command.append("--quiet")
    subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "AGORA_DATABASE_URL": url, "AGORA_SECRET_KEY": SECRET_KEY},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    marker.write_text(json.dumps(wanted))
    return url


def tune(url: str) -> None:
    """PostgreSQL settings for a machine with this much RAM and an SSD, as in perf.md (the report prints them).
    shared_buffers only changes when the server starts: it is restarted when the running value is another."""
    with psycopg.connect(url, autocommit=True) as connection:
        for name, value in (
            ("shared_buffers", SHARED_BUFFERS),
            ("effective_cache_size", "12GB"),
            ("random_page_cost", "1.1"),
            ("work_mem", "16MB"),
        ):
            connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        connection.execute("SELECT pg_reload_conf()")
        (shared_buffers,) = connection.execute("SHOW shared_buffers").fetchone()
        (data_directory,) = connection.execute("SHOW data_directory").fetchone()
    if shared_buffers != SHARED_BUFFERS:
        _restart_embedded(Path(data_directory))


def _restart_embedded(pgdata: Path) -> None:
    """Restart the embedded server this process started (nobody else uses it during a run), keeping pgserver's
    record of the postmaster current so that it still stops the server when the run exits."""
    import pgserver
    from pgserver.postgres_server import PostmasterInfo

    server = pgserver.PostgresServer._instances[pgdata]
    pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=server.system_user)
    server._postmaster_info = PostmasterInfo.read_from_pgdata(pgdata)


def _admin(url: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/postgres"))


def fresh_copy(pristine: str) -> str:
    """A copy of the seeded database to run on (file copy: seconds, not a re-seed)."""
    with psycopg.connect(_admin(pristine), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{RUN_DATABASE}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{RUN_DATABASE}" TEMPLATE "{DATABASE}" STRATEGY FILE_COPY')
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(pristine)._replace(path=f"/{RUN_DATABASE}"))


def drop_copy(pristine: str) -> None:
    with psycopg.connect(_admin(pristine), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{RUN_DATABASE}" WITH (FORCE)')


# ---------------------------------------------------------------------------------------------------- servers


def agora_env(url: str, count: int) -> dict[str, str]:
    return {
        "AGORA_DATABASE_URL": url,
        "AGORA_SECRET_KEY": SECRET_KEY,
        "AGORA_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
        "AGORA_WEBHOOK_WORKER": "false",
        "AGORA_LOG_LEVEL": "warning",
        "AGORA_DB_POOL_MIN": str(math.ceil(CONNECTIONS / count)),
        "AGORA_DB_POOL_MAX": str(CONNECTIONS),
    }


def start_agora(url: str, count: int) -> Server:
    return start_server("app.main:app_from_environment", count, agora_env(url, count), "/healthz", factory=True)


# ---------------------------------------------------------------------------------------------------- ceilings


def ceiling_run(scenario: str, target: str, ceiling: replay.Ceiling, note: str) -> Run:
    result = ceiling.raw
    return Run(
        scenario=scenario,
        target=target,
        processes=replay.CLIENTS,
        connections=replay.CLIENTS,
        requests=result.transactions,
        rps=ceiling.tps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        max_ms=result.max_ms,
        failed=result.failed,
        statements=ceiling.statements,
        round_trips=ceiling.round_trips,
        note=f"{note}{'; ' if note else ''}raw {result.tps:.0f} tx/s incl. the per-request lookup "
        f"({ceiling.lookup_tps:.0f}/s alone)",
    )


def write_ceilings(url: str, requests: int, folder: Path) -> tuple[list[Run], dict[str, replay.Ceiling]]:
    """Per write scenario: capture its SQL (rolled back) and replay it with pgbench (committed); then the minimal
    transaction, on fresh targets of the same database (the replay has committed its own)."""
    capture = folder / "capture.jsonl"
    env = {**agora_env(url, 1), "BENCH_CAPTURE_FILE": str(capture), "BENCH_CAPTURE_ROLLBACK": "1"}
    server = start_server("tests.bench.capture_app:create", 1, env, "/healthz", factory=True)
    emission = f"{60 / RATE_LIMIT_PER_MINUTE:.9f} seconds"  # GCRA's interval, as Agora derives it from the limit
    runs: list[Run] = []
    ceilings: dict[str, replay.Ceiling] = {}
    try:
        for scenario in writes.SCENARIOS:
            capture.unlink(missing_ok=True)
            chosen = writes.choose(url, scenario, requests)
            if len(chosen) < replay.CLIENTS:
                raise SystemExit(f"bench: only {len(chosen)} requests available for {scenario.name}")
            problems = writes.send_all(server.url, chosen)
            if problems:
                raise SystemExit(f"bench: {scenario.name} failed while capturing:\n" + "\n".join(problems[:5]))
            time.sleep(0.5)  # the last connections go back to the pool (and are written) after the responses
            kept = folder / f"capture-{scenario.name.replace(' ', '-')}.jsonl"
            capture.rename(kept)
            ceiling = replay.replay(url, kept, f"bench_replay_{scenario.name.replace(' ', '_')}", folder)
            ceilings[scenario.name] = ceiling
            others = f"{ceiling.others} captured requests of another shape left out" if ceiling.others else ""
            runs.append(ceiling_run(scenario.name, "pgbench", ceiling, others))
            least = minimal.run(
                url, scenario.name, requests, folder, body_bytes=minimal.response_bytes(kept), emission=emission
            )
            runs.append(
                ceiling_run(
                    scenario.name, "minimal", least, f"bench/minimal/{minimal.BY_SCENARIO[scenario.name].path.name}"
                )
            )
            for target, found in (("pgbench", ceiling), ("minimal", least)):
                print(
                    f"  {target:<10} {scenario.name:<24} {found.tps:>9.0f} tx/s  (raw {found.raw.tps:.0f}, lookup "
                    f"alone {found.lookup_tps:.0f})  {found.statements} statements in {found.round_trips} round trips",
                    flush=True,
                )
    finally:
        server.stop()
    return runs, ceilings


# ---------------------------------------------------------------------------------------------------- one repetition


def smallest_tasks(tasks: int, prepared: int, needed: int) -> int:
    """The --tasks that would prepare `needed` requests where `tasks` prepared `prepared` (targets grow with the
    dataset), rounded up to 10,000."""
    return math.ceil(tasks * needed / max(prepared, 1) / 10_000) * 10_000


def measure_writes(
    server: Server, url: str, count: int, folder: Path, args: argparse.Namespace, ceilings: dict[str, replay.Ceiling]
) -> list[Run]:
    writes.check_filler(server.url)
    runs = []
    for scenario in writes.SCENARIOS:
        # Agora cannot outrun pgbench replaying its own statements; the headroom covers a run that comes close.
        rate = ceilings[scenario.name].tps * WRITE_HEADROOM
        needed = math.ceil(rate * (args.warmup + args.duration))
        chosen = writes.choose(url, scenario, needed)
        if len(chosen) < needed:
            print(
                f"  {scenario.name} x{count}: {len(chosen):,} requests prepared of the {needed:,} a whole run needs "
                f"(up to {rate:.0f} req/s for {args.warmup + args.duration} s): it may end early, and is then "
                f"scored over the time it ran; --tasks {smallest_tasks(args.tasks, len(chosen), needed):,} "
                "prepares enough",
                flush=True,
            )
        warm = math.ceil(len(chosen) * args.warmup / (args.warmup + args.duration))
        stem = f"agora-{count}-{scenario.name.replace(' ', '-')}"
        warm_script = writes.lua_script(folder / f"{stem}-warmup.lua", chosen[:warm], THREADS)
        script = writes.lua_script(folder / f"{stem}.lua", chosen[warm:], THREADS)
        run = measure(
            server, scenario.name, "agora", script, seconds=args.duration, warmup=args.warmup, warmup_script=warm_script
        )
        run.prepared = len(chosen) - warm
        run.note = f"{run.prepared:,} requests prepared for the timed run"
        if (run.seconds or 0) < 0.9 * args.duration:
            run.note += f"; they ran out after {run.seconds:.1f} s of {args.duration} s"
        runs.append(run)
    return runs


def measure_reads(server: Server, target: str, f: reads.Fixtures, folder: Path, args: argparse.Namespace) -> list[Run]:
    runs = []
    for scenario in reads.scenarios(f):
        path = scenario.agora if target == "agora" else scenario.ceiling
        if path is None:
            continue
        if scenario.agora is not None:
            preflight(server, reads.sample_path(path, f), key=f.keys[0] if target == "agora" else None)
        name = f"{target} {server.count} {scenario.name}"
        script = reads.lua_script(folder, name, path, f, authenticated=target == "agora")
        runs.append(measure(server, scenario.name, target, script, seconds=args.duration, warmup=args.warmup))
        if target == "agora" and args.latency_rows:
            # The latency row: the server has just served this scenario for warmup + duration, no warm-up again.
            run = measure(
                server, scenario.name, target, script, seconds=args.duration, warmup=0, connections=LATENCY_CONNECTIONS
            )
            runs.append(run)
    return runs


def fanout(url: str, counts: list[int], deliveries: int) -> list[Run]:
    from tests.bench.fanout import fanout_runs

    fields = set(Run.__dataclass_fields__)
    return [
        Run(**{k: v for k, v in row.items() if k in fields}, failed=row["errors"])
        for row in fanout_runs(url, processes=counts, deliveries=deliveries)
    ]


def repetition(pristine: str, f: reads.Fixtures, counts: list[int], args: argparse.Namespace) -> list[Run]:
    """Reads first, on the copy exactly as seeded; then the writes, which change it."""
    started = time.monotonic()
    url = fresh_copy(pristine)
    print(f"fresh copy of the seeded database in {time.monotonic() - started:.1f} s", flush=True)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="agora-bench-") as temp:
        folder = Path(temp)
        for count in counts if "reads" in args.parts else []:
            print(f"reads, agora, {count} process(es):", flush=True)
            server = start_agora(url, count)
            try:
                runs += measure_reads(server, "agora", f, folder, args)
            finally:
                server.stop()
            print(f"reads, ceiling, {count} process(es):", flush=True)
            env = {"BENCH_DATABASE_URL": url, "BENCH_POOL_MAX": str(CONNECTIONS)}
            server = start_server("tests.bench.ceiling_app:app", count, env, "/plain")
            try:
                runs += measure_reads(server, "ceiling", f, folder, args)
            finally:
                server.stop()
        if "writes" in args.parts:
            writes.fund_posters(url)
            print("write ceilings (capture, then pgbench replay):", flush=True)
            ceiling_runs, ceilings = write_ceilings(url, args.replay_requests, folder)
            runs += ceiling_runs
            for count in counts:
                print(f"writes, agora, {count} process(es):", flush=True)
                server = start_agora(url, count)
                try:
                    for run in measure_writes(server, url, count, folder, args, ceilings):
                        run.statements = ceilings[run.scenario].statements
                        run.round_trips = ceilings[run.scenario].round_trips
                        runs.append(run)
                finally:
                    server.stop()
        if "fanout" in args.parts:
            print("webhook fan-out:", flush=True)
            runs += fanout(url, counts, args.fanout_deliveries)
    return runs


def score(runs: list[Run], chosen: list[reads.Scenario]) -> None:
    """Each Agora row's req/s over its ceiling's: the raw endpoint (reads), pgbench (writes), the sender (fan-out);
    a write's also over its minimal transaction's. Only the throughput rows (32 connections) are scored: the
    4-connection rows are there for their latencies."""
    ceiling_of = {s.name: s.ceiling_name for s in chosen}
    for run in runs:
        if run.target != "agora" or run.connections != CONNECTIONS:
            continue
        if run.scenario in ceiling_of:
            ceiling_name = next(s.name for s in chosen if s.ceiling_name == ceiling_of[run.scenario])
            candidates = [c for c in runs if c.target == "ceiling" and c.scenario == ceiling_name]
            candidates = [c for c in candidates if c.processes == run.processes]
        elif any(s.name == run.scenario for s in writes.SCENARIOS):
            candidates = [c for c in runs if c.target == "pgbench" and c.scenario == run.scenario]
        else:
            same = [c for c in runs if c.target == "ceiling" and c.scenario == run.scenario]
            candidates = [c for c in same if c.processes == run.processes] or same
        # A row with errors measured something other than the scenario: no ratio, and the run fails (see main).
        if candidates and candidates[0].rps and not run.errors and not candidates[0].errors:
            run.ratio = round(run.rps / candidates[0].rps, 3)
        least = [c for c in runs if c.target == "minimal" and c.scenario == run.scenario]
        if least and least[0].rps and not run.errors and not least[0].errors:
            run.ratio_minimal = round(run.rps / least[0].rps, 3)


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10, help="timed seconds per scenario (wrk takes whole s)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per scenario (0: none)")
    parser.add_argument("--processes", default="1,2", help="API process counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the table shows each row's median")
    parser.add_argument("--replay-requests", type=int, default=4800, help="requests captured per write scenario")
    parser.add_argument("--fanout-deliveries", type=int, default=3000)
    parser.add_argument("--parts", default="reads,writes,fanout", help="which parts to run, comma-separated")
    parser.add_argument(
        "--no-latency-rows",
        dest="latency_rows",
        action="store_false",
        help=f"skip the second pass of Agora's reads with {LATENCY_CONNECTIONS} connections",
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench" / ".data")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    counts = [int(n) for n in args.processes.split(",") if n.strip()]
    for tool, package in ((WRK, "wrk"), ("pgbench", "postgresql-client")):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is not installed (Debian/Ubuntu: sudo apt-get install {package})")

    background = background_busy_pct()
    if background > 15:
        print(
            f"WARNING: the machine is already {background:.0f} % busy before the run: figures will be low", flush=True
        )
    pristine = ensure_seeded(args.data_dir.resolve(), args.tasks)
    tune(pristine)
    f = reads.fixtures(pristine, KeyRing.parse(SECRET_KEY))
    print(
        f"dataset: {args.tasks:,} tasks, {f.open_tasks:,} open; deep page after {f.deep_offset:,} rows; "
        f"search terms selective {f.selective}, broad {f.broad}",
        flush=True,
    )
    runs: list[Run] = []
    try:
        for number in range(1, args.repeat + 1):
            print(f"--- repetition {number} of {args.repeat}", flush=True)
            runs += repetition(pristine, f, counts, args)
        found_versions = versions(pristine)
    finally:
        drop_copy(pristine)

    chosen = reads.scenarios(f)
    medians = median_runs(runs)
    score(medians, chosen)
    order = [s.name for s in chosen] + [s.name for s in writes.SCENARIOS]
    medians.sort(
        key=lambda r: (
            r.connections != CONNECTIONS,  # the 4-connection latency rows in a block of their own, after the others
            r.processes if r.target not in ("pgbench", "minimal") else 0,
            order.index(r.scenario) if r.scenario in order else 99,
            r.target,
        )
    )
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git_sha(),
        "machine": {**machine(), "busy_pct_before_run": background},
        "versions": found_versions,
        "config": {
            "threads": THREADS,
            "connections": CONNECTIONS,
            "latency_connections": LATENCY_CONNECTIONS if args.latency_rows else None,
            "duration": args.duration,
            "warmup": args.warmup,
            "processes": counts,
            "repeat": args.repeat,
            "replay_requests": args.replay_requests,
            "parts": sorted(args.parts),
        },
        "dataset": {
            "tasks": args.tasks,
            "open_tasks": f.open_tasks,
            "deep_offset": f.deep_offset,
            "selective": f.selective,
            "broad": f.broad,
            "agent_keys": len(f.keys),
        },
        "all_runs": [vars(run) | {"errors": run.errors} for run in runs],
    }
    checks = targets(medians, f)
    json_path, md_path = write_results(args.results_dir, report, medians, checks)
    print()
    print(table(medians))
    print()
    print("\n".join(checks))
    shown = json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path
    print(f"\nwrote {shown} and {md_path.name}")
    flagged = [r for r in medians if r.errors]
    if flagged:
        names = ", ".join(f"{r.scenario} ({row_name(r)})" for r in flagged)
        raise SystemExit(f"\nbench: FAILED: {len(flagged)} row(s) had failed requests (in bold, no ratio): {names}")


if __name__ == "__main__":
    main()
