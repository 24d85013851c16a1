"""`make bench`: Agora's read scenarios against their ceilings, measured side by side in one run with wrk.

    .venv/bin/python -m tests.bench.run [--tasks N] [--duration S] [--warmup S] [--processes 1,2]

1. An embedded PostgreSQL of its own (`bench/.data/` unless --data-dir), seeded once per task count with
   `agora bench seed` (a marker file remembers the count).
2. For each process count: Agora under uvicorn (`--workers N --loop uvloop --http httptools`), then the ceiling app
   (`tests/bench/ceiling_app.py`: the same rows from one raw psycopg query, no auth; and a plain JSON endpoint) with
   the same server flags. Every scenario: a warm-up, then `wrk -t2 -c32 -d{duration}s --latency` with a Lua script
   that picks random ids, agent keys and search terms per request.
3. A table (req/s, p50, p99, errors, ratio to the ceiling, peak RSS per API process, wrk's own CPU) printed and
   written to `bench/results/<date>-<sha>.json` and `.md`.

Read scenarios only so far: write scenarios, pgbench replay and webhook fan-out are still to come (issue 5).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import httpx
import psutil
import psycopg

from app.bench.dataset import agent_key
from app.http.pagination import encode_cursor
from app.repo.database import embedded_server_url
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "agora_bench"
CONNECTIONS = 32
THREADS = 2
PAGE = 20
DEEP_ROWS = 10_000
KEYS = 1000  # distinct seeded agents whose keys the load generator rotates through
WRK = "wrk"


@dataclass(frozen=True)
class Scenario:
    name: str
    agora: str | None  # Lua expression for the request path on Agora (None: ceiling only)
    ceiling: str  # Lua expression for the path on the ceiling app
    ceiling_name: str  # which ceiling this scenario is scored against


@dataclass
class Run:
    scenario: str
    target: str  # "agora" or "ceiling"
    processes: int
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    non_2xx: int = 0
    socket_errors: int = 0
    peak_rss_mb: list[float] = field(default_factory=list)
    wrk_cpu_s: float = 0.0
    cpu_busy_pct: float | None = None
    ratio: float | None = None

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


# ---------------------------------------------------------------------------------------------------- the dataset


def database_url(data_dir: Path) -> str:
    return embedded_server_url(data_dir / "pg", database=DATABASE)


def ensure_seeded(data_dir: Path, tasks: int) -> str:
    """The benchmark database, seeded with `tasks` tasks (re-seeded from scratch if it holds another count)."""
    url = database_url(data_dir)
    marker = data_dir / "seeded.json"
    wanted = {"tasks": tasks, "seed": 1, "database": DATABASE}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return url
    marker.unlink(missing_ok=True)
    admin = urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{DATABASE}"')
    print(f"seeding {tasks:,} tasks into {data_dir} (once per task count) ...", flush=True)
    agora = Path(sys.executable).with_name("agora")
    command = [str(agora), "bench", "seed", "--tasks", str(tasks)]
    if not sys.stderr.isatty():
        command.append("--quiet")
    subprocess.run(
        command, cwd=ROOT, env={**os.environ, "AGORA_DATABASE_URL": url}, check=True, stdout=subprocess.DEVNULL
    )
    marker.write_text(json.dumps(wanted))
    return url


@dataclass
class Fixtures:
    """What the Lua scripts pick from: ids, keys, search terms, the deep cursor."""

    min_task: int
    max_task: int
    open_tasks: int
    keys: list[str]
    deep_offset: int
    deep_cursor: str
    deep_after_id: int
    selective: dict[str, int]  # term -> open tasks it matches
    broad: dict[str, int]


def _matches(connection: psycopg.Connection, term: str) -> int:
    from app.services.tasks import search_query

    (count,) = connection.execute(
        "SELECT count(*) FROM task WHERE status = 'open' AND search @@ to_tsquery('english', %s)",
        (search_query(term),),
    ).fetchone()
    return count


def _spread(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def fixtures(url: str) -> Fixtures:
    with psycopg.connect(url, autocommit=True) as connection:
        low, high = connection.execute("SELECT min(id), max(id) FROM task").fetchone()
        (open_tasks,) = connection.execute("SELECT count(*) FROM task WHERE status = 'open'").fetchone()
        agents = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM agent WHERE status = 'active' ORDER BY md5(id::text) LIMIT %s", (KEYS,)
            )
        ]
        # The cursor Agora hands out after DEEP_ROWS rows of the default browse (open, newest first).
        deep_offset = max(0, min(DEEP_ROWS, open_tasks - PAGE - 1))
        row = connection.execute(
            "SELECT id, budget_credits FROM task WHERE status = 'open' ORDER BY id DESC OFFSET %s LIMIT 1",
            (max(deep_offset - 1, 0),),
        ).fetchone()
        after_id, budget = row
        cursor = encode_cursor({"s": "newest", "id": after_id, "v": budget})
        # Search terms from the seeded vocabulary: broad ones match >= 5 % of open tasks, selective ones <= 0.1 %.
        stats = connection.execute(
            "SELECT word, ndoc FROM ts_stat($$SELECT search FROM task WHERE status = 'open'$$)"
            " WHERE word ~ '^[a-z]{4,}$' ORDER BY ndoc DESC, word"
        ).fetchall()
        broad_floor = math.ceil(0.05 * open_tasks)
        selective_cap = max(3, math.floor(0.001 * open_tasks))
        broad: dict[str, int] = {}
        for word, _ in _spread([s for s in stats if broad_floor <= s[1] <= 0.5 * open_tasks], 12):
            count = _matches(connection, word)
            if count >= broad_floor:
                broad[word] = count
        selective: dict[str, int] = {}
        for word, _ in _spread([s for s in stats if 1 <= s[1] <= selective_cap // 2 + 1], 24):
            count = _matches(connection, word)
            if 1 <= count <= selective_cap:
                selective[word] = count
            if len(selective) >= 12:
                break
    if not broad or not selective:
        raise SystemExit(f"bench: found no usable search terms (broad {broad}, selective {selective})")
    return Fixtures(
        min_task=low,
        max_task=high,
        open_tasks=open_tasks,
        keys=[agent_key(agent) for agent in agents],
        deep_offset=deep_offset,
        deep_cursor=cursor,
        deep_after_id=after_id,
        selective=selective,
        broad=broad,
    )


# ---------------------------------------------------------------------------------------------------- the scenarios


def scenarios(f: Fixtures) -> list[Scenario]:
    task_id = f"math.random({f.min_task}, {f.max_task})"
    return [
        Scenario("plain JSON (framework)", None, '"/plain"', "plain JSON (framework)"),
        Scenario("GET task", f'"/api/v1/tasks/" .. {task_id}', f'"/task/" .. {task_id}', "GET task"),
        Scenario("browse page 1", '"/api/v1/tasks?status=open&limit=20"', '"/browse"', "browse page 1"),
        Scenario(
            f"browse {f.deep_offset:,} deep",
            f'"/api/v1/tasks?status=open&limit=20&cursor={f.deep_cursor}"',
            f'"/browse?after={f.deep_after_id}"',
            "browse deep",
        ),
        Scenario(
            "search selective",
            '"/api/v1/tasks/search?status=open&limit=20&q=" .. selective[math.random(#selective)]',
            '"/search?q=" .. selective[math.random(#selective)]',
            "search selective",
        ),
        Scenario(
            "search broad",
            '"/api/v1/tasks/search?status=open&limit=20&q=" .. broad[math.random(#broad)]',
            '"/search?q=" .. broad[math.random(#broad)]',
            "search broad",
        ),
    ]


def _lua_list(values: list[str]) -> str:
    return "{" + ", ".join(json.dumps(value) for value in values) + "}"


def lua_script(folder: Path, name: str, path_expression: str, f: Fixtures, *, authenticated: bool) -> Path:
    auth = 'headers["Authorization"] = "Bearer " .. keys[math.random(#keys)]' if authenticated else ""
    text = f"""-- generated by tests/bench/run.py
keys = {_lua_list(f.keys if authenticated else [])}
selective = {_lua_list(sorted(f.selective))}
broad = {_lua_list(sorted(f.broad))}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end
function init(args)
  math.randomseed(os.time() * 7919 + (thread_number or 0))
end
function request()
  local headers = {{}}
  {auth}
  return wrk.format("GET", {path_expression}, headers)
end
"""
    script = folder / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".lua")
    script.write_text(text)
    return script


def sample_path(path_expression: str, f: Fixtures) -> str:
    """The path a Lua expression yields for one fixed choice (for the pre-flight check)."""
    path = path_expression.replace(f"math.random({f.min_task}, {f.max_task})", str(f.max_task))
    path = path.replace("selective[math.random(#selective)]", json.dumps(sorted(f.selective)[0]))
    path = path.replace("broad[math.random(#broad)]", json.dumps(sorted(f.broad)[0]))
    return "".join(part.strip().strip('"') for part in path.split(".."))


# ---------------------------------------------------------------------------------------------------- servers


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    count: int

    def workers(self) -> list[psutil.Process]:
        """The processes serving requests: uvicorn's spawned workers, or uvicorn itself with one worker."""
        master = psutil.Process(self.process.pid)
        if self.count == 1:
            return [master]
        return [
            child for child in master.children(recursive=True) if any("spawn_main" in part for part in child.cmdline())
        ]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(target: str, count: int, env: dict[str, str], ready_path: str, *, factory: bool = False) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", target, *(["--factory"] if factory else [])]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(count)]
    command += ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    server = Server(process, f"http://127.0.0.1:{port}", count)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"bench: {target} exited with {process.returncode} on start")
        try:
            if httpx.get(server.url + ready_path, timeout=2).status_code == 200 and len(server.workers()) == count:
                return server
        except (httpx.HTTPError, psutil.Error):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise SystemExit(f"bench: {target} did not start within 60 s")
        time.sleep(0.2)


def reset_peak_rss(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(OSError):
            Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # peak RSS := current RSS


def peak_rss_mb(processes: list[psutil.Process]) -> list[float]:
    peaks = []
    for process in processes:
        status = Path(f"/proc/{process.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            peaks.append(round(int(match.group(1)) / 1024, 1))
    return peaks


# ---------------------------------------------------------------------------------------------------- wrk


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unparseable wrk latency {text!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2)], 3)


def parse_wrk(output: str, run: Run) -> None:
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        run.rps = float(match.group(1))
    if match := re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output):
        run.requests = int(match.group(1))
        run.seconds = _ms(match.group(2) + match.group(3)) / 1000
    if match := re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE):
        run.p50_ms = _ms(match.group(1))
    if match := re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE):
        run.p99_ms = _ms(match.group(1))
    if match := re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", output, re.MULTILINE):
        run.max_ms = _ms(match.group(1))
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        run.non_2xx = int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        run.socket_errors = sum(int(n) for n in match.groups())


def _cpu_times() -> tuple[int, int]:
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def background_busy_pct(seconds: float = 1.0) -> float:
    """How busy the CPUs are before the benchmark starts (anything else running skews every figure)."""
    busy_before, total_before = _cpu_times()
    time.sleep(seconds)
    busy_after, total_after = _cpu_times()
    return round(100 * (busy_after - busy_before) / max(total_after - total_before, 1), 1)


def wrk(url: str, script: Path, seconds: int, *, latency: bool) -> tuple[str, float, float]:
    """Run wrk; return its output, its own CPU seconds (user + sys) and the machine's busy % meanwhile."""
    command = [WRK, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "30s"]
    command += [*(["--latency"] if latency else []), "-s", str(script), url]
    busy_before, total_before = _cpu_times()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    busy_after, total_after = _cpu_times()
    if process.returncode != 0:
        raise SystemExit(f"bench: wrk failed ({process.returncode}):\n{output}")
    busy = 100 * (busy_after - busy_before) / max(total_after - total_before, 1)
    return output, usage.ru_utime + usage.ru_stime, round(busy, 1)


def measure(server: Server, scenario: str, target: str, script: Path, args: argparse.Namespace) -> Run:
    if args.warmup > 0:
        wrk(server.url, script, args.warmup, latency=False)
    workers = server.workers()
    reset_peak_rss(workers)
    output, cpu, busy = wrk(server.url, script, args.duration, latency=True)
    run = Run(scenario=scenario, target=target, processes=server.count, wrk_cpu_s=round(cpu, 2), cpu_busy_pct=busy)
    parse_wrk(output, run)
    run.peak_rss_mb = peak_rss_mb(workers)
    flag = "  ERRORS" if run.errors else ""
    print(
        f"  {target:>7} x{server.count} {scenario:<24} {run.rps:>9.0f} req/s  p50 {run.p50_ms} ms"
        f"  p99 {run.p99_ms} ms  wrk cpu {run.wrk_cpu_s} s{flag}",
        flush=True,
    )
    return run


def preflight(server: Server, path: str, *, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(server.url + path, headers=headers, timeout=30)
    if response.status_code != 200:
        raise SystemExit(f"bench: GET {path} answered {response.status_code}: {response.text[:500]}")
    data = response.json().get("data")
    if not data:
        raise SystemExit(f"bench: GET {path} answered no rows: {response.text[:500]}")


# ---------------------------------------------------------------------------------------------------- the report


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
            "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings"
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
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "nogit"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(runs: list[Run]) -> str:
    lines = [
        "| scenario | processes | side | req/s | p50 ms | p99 ms | errors | ratio to ceiling | peak RSS MB/process "
        "| wrk CPU s | CPU busy % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        rss = " / ".join(f"{mb:.0f}" for mb in run.peak_rss_mb) or "-"
        errors = f"**{run.errors}**" if run.errors else "0"
        lines.append(
            f"| {run.scenario} | {run.processes} | {run.target} | {run.rps:.0f} | {_fmt(run.p50_ms)} | "
            f"{_fmt(run.p99_ms)} | {errors} | {_fmt(run.ratio)} | {rss} | {run.wrk_cpu_s:.1f} | "
            f"{_fmt(run.cpu_busy_pct, 0)} |"
        )
    return "\n".join(lines)


def write_results(folder: Path, report: dict, runs: list[Run]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{report['date'][:10]}-{report['git']}"
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(
        json.dumps({**report, "runs": [{**asdict(run), "errors": run.errors} for run in runs]}, indent=2) + "\n"
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
        f"{report['config']['warmup']} s warm-up then {report['config']['duration']} s timed, per scenario. "
        f"Server: uvicorn --loop uvloop --http httptools --workers N, for Agora and the ceiling app alike.",
        "",
        f"CPU busy before the run (other load on the machine): {m['busy_pct_before_run']} %.",
        "",
        f"Search terms: selective {d['selective']} (open tasks matched); broad {d['broad']}.",
        "",
        "Ratio = Agora's req/s / the ceiling's req/s (same processes): one raw psycopg query serving the same rows, "
        "no auth; the plain JSON row is the framework's own ceiling. Target: every read scenario >= 0.6.",
        "",
        table(runs),
        "",
    ]
    md_path.write_text("\n".join(md))
    return json_path, md_path


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10, help="timed seconds per scenario (wrk takes whole s)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per scenario (0: none)")
    parser.add_argument("--processes", default="1,2", help="API process counts, comma-separated")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench" / ".data")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",") if n.strip()]
    if shutil.which(WRK) is None:
        raise SystemExit("bench: wrk is not installed (Debian/Ubuntu: sudo apt-get install wrk)")

    background = background_busy_pct()
    if background > 15:
        print(
            f"WARNING: the machine is already {background:.0f} % busy before the run: figures will be low", flush=True
        )
    url = ensure_seeded(args.data_dir.resolve(), args.tasks)
    f = fixtures(url)
    print(
        f"dataset: {args.tasks:,} tasks, {f.open_tasks:,} open; deep page after {f.deep_offset:,} rows; "
        f"search terms selective {f.selective}, broad {f.broad}",
        flush=True,
    )
    chosen = scenarios(f)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="agora-bench-") as temp:
        folder = Path(temp)
        for count in counts:
            pool = str(CONNECTIONS)
            agora_env = {
                "AGORA_DATABASE_URL": url,
                "AGORA_RATE_LIMIT_PER_MINUTE": "1000000",
                "AGORA_WEBHOOK_WORKER": "false",
                "AGORA_LOG_LEVEL": "warning",
                "AGORA_DB_POOL_MIN": str(math.ceil(CONNECTIONS / count)),
                "AGORA_DB_POOL_MAX": pool,
            }
            print(f"agora, {count} process(es):", flush=True)
            server = start_server("app.main:app_from_environment", count, agora_env, "/healthz", factory=True)
            try:
                for scenario in chosen:
                    if scenario.agora is None:
                        continue
                    preflight(server, sample_path(scenario.agora, f), key=f.keys[0])
                    script = lua_script(folder, f"agora {scenario.name}", scenario.agora, f, authenticated=True)
                    runs.append(measure(server, scenario.name, "agora", script, args))
            finally:
                server.stop()
            print(f"ceiling, {count} process(es):", flush=True)
            ceiling_env = {"BENCH_DATABASE_URL": url, "BENCH_POOL_MAX": pool}
            server = start_server("tests.bench.ceiling_app:app", count, ceiling_env, "/plain")
            ceilings: dict[str, Run] = {}
            try:
                for scenario in chosen:
                    if scenario.agora is not None:
                        preflight(server, sample_path(scenario.ceiling, f), key=None)
                    script = lua_script(folder, f"ceiling {scenario.name}", scenario.ceiling, f, authenticated=False)
                    ceilings[scenario.ceiling_name] = measure(server, scenario.name, "ceiling", script, args)
                    runs.append(ceilings[scenario.ceiling_name])
            finally:
                server.stop()
            for run in runs:
                if run.processes == count and run.target == "agora":
                    ceiling = next(c for s, c in ceilings.items() if s == _ceiling_of(chosen, run.scenario))
                    run.ratio = round(run.rps / ceiling.rps, 3) if ceiling.rps else None

    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git_sha(),
        "machine": {**machine(), "busy_pct_before_run": background},
        "versions": versions(url),
        "config": {
            "threads": THREADS,
            "connections": CONNECTIONS,
            "duration": args.duration,
            "warmup": args.warmup,
            "processes": counts,
        },
        "dataset": {
            "tasks": args.tasks,
            "open_tasks": f.open_tasks,
            "deep_offset": f.deep_offset,
            "selective": f.selective,
            "broad": f.broad,
            "agent_keys": len(f.keys),
        },
    }
    ordered = sorted(runs, key=lambda r: (r.processes, [s.name for s in chosen].index(r.scenario), r.target))
    json_path, md_path = write_results(args.results_dir, report, ordered)
    print()
    print(table(ordered))
    flagged = [r for r in ordered if r.errors]
    if flagged:
        print(f"\nWARNING: {len(flagged)} run(s) had non-2xx responses or socket errors (flagged in bold).")
    print(f"\nwrote {json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path} and {md_path.name}")


def _ceiling_of(chosen: list[Scenario], name: str) -> str:
    return next(s.ceiling_name for s in chosen if s.name == name)


if __name__ == "__main__":
    main()
