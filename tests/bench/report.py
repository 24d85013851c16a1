"""The report of `make bench`: the table, the machine and versions it ran on, JSON and Markdown files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import psycopg

from tests.bench.load import CONNECTIONS, LATENCY_CONNECTIONS, ROOT, THREADS, WRK, Run


def machine() -> dict[str, object]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
    }


def versions(url: str) -> dict[str, str]:
    with psycopg.connect(url) as connection:
        (server_version,) = connection.execute("SHOW server_version").fetchone()
        settings = connection.execute(
            "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings"
            " WHERE name IN ('shared_buffers', 'work_mem', 'max_connections', 'effective_cache_size',"
            " 'random_page_cost', 'synchronous_commit', 'jit')"
        ).fetchone()[0]
    wrk_version = subprocess.run([WRK, "-v"], capture_output=True, text=True).stdout.split("\n", 1)[0].strip()
    found = {"python": platform.python_version(), "postgresql": f"{server_version} ({settings})", "wrk": wrk_version}
    for package in (
        "litestar",
        "uvicorn",
        "uvloop",
        "httptools",
        "psycopg",
        "psycopg-binary",
        "psycopg-pool",
        "msgspec",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def git_sha() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        return sha + ("-dirty" if dirty.strip() else "")  # a changed tracked file: not the commit's code
    except (OSError, subprocess.CalledProcessError):
        return "nogit"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def median_runs(runs: list[Run]) -> list[Run]:
    """Of repeated runs of one scenario on one side, the run with the median req/s (its latencies with it)."""
    groups: dict[tuple[str, str, int, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.scenario, run.target, run.processes, run.connections), []).append(run)
    chosen = []
    for group in groups.values():
        ordered = sorted(group, key=lambda r: r.rps)
        middle = ordered[(len(ordered) - 1) // 2]
        if len(group) > 1:
            middle.note = " ".join(
                filter(None, [middle.note, "req/s of the runs: " + " / ".join(f"{r.rps:.0f}" for r in group)])
            )
        chosen.append(middle)
    return chosen


def table(runs: list[Run]) -> str:
    lines = [
        "| scenario | processes | connections | side | req/s | timed s | p50 ms | p99 ms | max ms | errors "
        "| statements / round trips | ratio to ceiling | ratio to minimal | peak RSS MB/process | wrk CPU s "
        "| CPU busy % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        rss = " / ".join(f"{mb:.0f}" for mb in run.peak_rss_mb) or "-"
        errors = f"**{run.errors}**" if run.errors else "0"
        sql = "-" if run.statements is None else f"{run.statements:.1f} / {run.round_trips:.1f}"
        lines.append(
            f"| {run.scenario} | {run.processes} | {run.connections} | {run.target} | {run.rps:.0f} | "
            f"{_fmt(run.seconds, 1)} | {_fmt(run.p50_ms)} | {_fmt(run.p99_ms)} | {_fmt(run.max_ms, 0)} | {errors} | "
            f"{sql} | {_fmt(run.ratio)} | {_fmt(run.ratio_minimal)} | {rss} | {run.wrk_cpu_s:.1f} | "
            f"{_fmt(run.cpu_busy_pct, 0)} |"
        )
    return "\n".join(lines)


def row_name(run: Run) -> str:
    """How a row is named in notes: its side and process count, and its connections when not the usual."""
    return f"{run.target} x{run.processes}" + (f" c{run.connections}" if run.connections != CONNECTIONS else "")


def _of(runs: list[Run], target: str, scenario: str | None = None, *, prefix: str = "") -> list[Run]:
    return [
        r
        for r in runs
        if r.target == target and (r.scenario == scenario if scenario else r.scenario.startswith(prefix))
    ]


def _check(holds: bool, text: str) -> str:
    return f"- [{'x' if holds else ' '}] {text}"


def targets(runs: list[Run], fixtures, statement_timeout_ms: int = 5000) -> list[str]:
    """Issue 5's targets, each with the figures that decide it ([x] holds, [ ] missed)."""
    from tests.bench.reads import scenarios
    from tests.bench.writes import SCENARIOS

    lines = ["Targets:"]
    api = [r for r in runs if r.target == "agora" and r.scenario != "webhook fan-out"]  # API processes
    agora = [r for r in api if r.connections == CONNECTIONS]  # the throughput rows
    latency = [r for r in api if r.connections == LATENCY_CONNECTIONS]  # the latency rows
    write_names = {s.name for s in SCENARIOS}
    read_names = {s.name for s in scenarios(fixtures) if s.agora is not None}
    for kind, names, floor in (("write", write_names, 0.5), ("read", read_names, 0.6)):
        rows = [r for r in agora if r.scenario in names and r.ratio is not None]
        if rows:
            worst = min(rows, key=lambda r: r.ratio)
            figures = ", ".join(f"{r.scenario} x{r.processes} {r.ratio:.2f}" for r in rows)
            lines.append(
                _check(
                    worst.ratio >= floor,
                    f"every {kind} scenario >= {floor}x its ceiling (worst {worst.scenario} x{worst.processes} "
                    f"{worst.ratio:.2f}): {figures}",
                )
            )
    rows = [r for r in agora if r.scenario in write_names and r.ratio_minimal is not None]
    if rows:
        worst = min(rows, key=lambda r: r.ratio_minimal)
        figures = ", ".join(f"{r.scenario} x{r.processes} {r.ratio_minimal:.2f}" for r in rows)
        lines.append(
            _check(
                worst.ratio_minimal >= 0.35,
                f"every write >= 0.35x its minimal transaction (worst {worst.scenario} x{worst.processes} "
                f"{worst.ratio_minimal:.2f}): {figures}",
            )
        )
    settle = _of(runs, "pgbench", "accept deliverable")
    if settle and settle[0].round_trips is not None:
        lines.append(
            _check(settle[0].round_trips <= 8, f"accept deliverable in <= 8 round trips: {settle[0].round_trips:.0f}")
        )
    browse = [r for r in agora if r.scenario.startswith("browse")]
    if browse:
        worst = max(browse, key=lambda r: r.p99_ms or 0)
        lines.append(
            _check(
                (worst.p99_ms or 0) <= 15,
                f"browse p99 <= 15 ms: worst {worst.scenario} x{worst.processes} {worst.p99_ms} ms",
            )
        )
    for count in sorted({r.processes for r in browse}):
        first = [r for r in browse if r.scenario == "browse page 1" and r.processes == count]
        deep = [r for r in browse if "deep" in r.scenario and r.processes == count]
        if first and deep and deep[0].rps and deep[0].p50_ms:
            slower = max(first[0].rps / deep[0].rps, deep[0].p50_ms / first[0].p50_ms)
            lines.append(
                _check(slower <= 1.5, f"deep page within 1.5x of page 1 (x{count}): {slower:.2f}x (req/s and p50)")
            )
    for scenario, limit in (("search selective", 25), ("search broad", 150)):
        rows = [r for r in agora if r.scenario == scenario]
        if rows:
            worst = max(rows, key=lambda r: r.p99_ms or 0)
            lines.append(
                _check(
                    (worst.p99_ms or 0) <= limit,
                    f"{scenario} p99 <= {limit} ms: worst x{worst.processes} {worst.p99_ms} ms",
                )
            )
    quick = [r for r in latency if r.scenario in ("GET task", "search selective") or r.scenario.startswith("browse")]
    if quick:
        worst = max(quick, key=lambda r: r.p99_ms or 0)
        lines.append(
            _check(
                (worst.p99_ms or 0) <= 10,
                f"GET task, browse and selective search p99 <= 10 ms at {LATENCY_CONNECTIONS} connections: worst "
                f"{worst.scenario} x{worst.processes} {worst.p99_ms} ms",
            )
        )
    broad = [r for r in latency if r.scenario == "search broad"]
    if broad:
        worst = max(broad, key=lambda r: r.p50_ms or 0)
        lines.append(
            _check(
                (worst.p50_ms or 0) <= 60,
                f"broad search p50 <= 60 ms at {LATENCY_CONNECTIONS} connections: worst x{worst.processes} "
                f"{worst.p50_ms} ms",
            )
        )
    slowest = max((r for r in agora if r.max_ms is not None), key=lambda r: r.max_ms, default=None)
    if slowest:
        lines.append(
            _check(
                slowest.max_ms < statement_timeout_ms,
                f"no request slower than the statement timeout ({statement_timeout_ms} ms): slowest "
                f"{slowest.scenario} x{slowest.processes} {slowest.max_ms:.0f} ms",
            )
        )
    rss = [(mb, r) for r in agora for mb in r.peak_rss_mb]
    if rss:
        mb, r = max(rss, key=lambda pair: pair[0])
        lines.append(
            _check(
                mb <= 150, f"<= 150 MB RSS per API process under load: peak {mb:.0f} MB ({r.scenario} x{r.processes})"
            )
        )
    errors = [r for r in runs if r.errors]
    lines.append(_check(not errors, f"no errors: {len(errors)} row(s) with errors"))
    return lines


def write_results(folder: Path, report: dict, runs: list[Run], checks: list[str]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{report['date'][:10]}-{report['git']}"
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(
        json.dumps(
            {**report, "runs": [{**asdict(run), "errors": run.errors} for run in runs], "targets": checks}, indent=2
        )
        + "\n"
    )
    m, v, d = report["machine"], report["versions"], report["dataset"]
    md = [
        f"# Agora bench {report['date']} ({report['git']})",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['ram_gib']} GiB RAM, {m['os']}. Load generator, "
        "PostgreSQL and the servers share these CPUs.",
        "",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in v.items()) + ".",
        "",
        f"Data: {d['tasks']:,} seeded tasks ({d['open_tasks']:,} open). Load: wrk -t{THREADS} -c{CONNECTIONS}, "
        f"{report['config']['warmup']} s warm-up then {report['config']['duration']} s timed, per scenario; "
        f"Agora's reads then again with -c{LATENCY_CONNECTIONS} for {report['config']['duration']} s (the "
        f"latency rows, connections {LATENCY_CONNECTIONS}: two per core, hardly any queueing), unscored. "
        f"Server: uvicorn --loop uvloop --http httptools --workers N, for Agora and the ceiling app alike.",
        "",
        f"CPU busy before the run (other load on the machine): {m['busy_pct_before_run']} %.",
        "",
        f"Search terms: selective {d['selective']} (open tasks matched); broad {d['broad']}.",
        "",
        f"Each row is the median of {report['config']['repeat']} repetition(s), each on a fresh copy of the seeded "
        "database.",
        "",
        "Req/s counts successful answers only (2xx, with the `ok: true` envelope on Agora) over the time from the first "
        "request to the last success (a write run whose prepared requests run out ends early: `timed s` shows it); a "
        "row with any failed request or socket error has no ratio and fails the run. "
        "Ratio = Agora's req/s / its ceiling's. Reads: the ceiling app with the same process count, one raw psycopg "
        "query serving the same rows, no auth (the plain JSON row is the framework's own ceiling). Writes: pgbench "
        f"({CONNECTIONS} clients, -M prepared) replaying the statements Agora sent for that request (captured with "
        "COMMIT turned into ROLLBACK, then replayed committing, each request once), less the cost of the per-request "
        "lookup of its values. Ratio to minimal (writes): Agora's req/s / that of the minimal transaction, the least "
        "SQL a correct implementation sends for the request (bench/minimal/<scenario>.sql, run by pgbench the same "
        "way on fresh targets, each once, and checked afterwards). "
        "Fan-out: deliveries per second against a bare sender to the same receiver. "
        "Statements / round trips: per request, from the capture.",
        "",
        table(runs),
        "",
        *checks,
        "",
        "Notes:",
        "",
        *[f"- {r.scenario} ({row_name(r)}): {r.note}" for r in runs if r.note],
        "",
    ]
    md_path.write_text("\n".join(md))
    return json_path, md_path
