"""Servers under test and the load generator: start uvicorn, run wrk, read its figures and the servers' RSS."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 32  # the throughput rows: enough to keep two cores busy
LATENCY_CONNECTIONS = 4  # the latency rows: two per core, so that a request hardly waits behind another
THREADS = 2
WRK = "wrk"
# Every script ends with this (it wraps the script's request()). setup() numbers the threads (so each can seed its
# generator or take its own slice of the requests) and keeps them; response() counts the successful answers (2xx,
# and on Agora the `"ok":true` envelope) and notes when the last one came; done() prints "successful: N in S s",
# S from the first request sent to the last success received. wrk's own Requests/sec counts
# every answer over the whole -d, also errors and the idle rest of a run whose requests ran out (a thread that has
# sent its last one calls wrk.thread:stop()); the harness scores N / S instead. The clock is CLOCK_MONOTONIC
# through LuaJIT's FFI: Lua's own os.time() has whole seconds.
LUA_COUNTING = """local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end
successful, fillers, started, last_success = 0, 0, nil, nil
local scenario_request = request
function request()
  if started == nil then started = now() end
  return scenario_request()
end
function response(status, headers, body)
  if filler_prefix ~= nil and string.sub(body, 1, #filler_prefix) == filler_prefix then
    fillers = fillers + 1
  elseif status >= 200 and status < 300 and (success_marker == nil or string.find(body, success_marker, 1, true)) then
    successful = successful + 1
    last_success = now()
  end
end
function done(summary, latency, requests)
  local total, filled, first, final = 0, 0, nil, nil
  for _, thread in ipairs(threads) do
    total = total + thread:get("successful")
    filled = filled + thread:get("fillers")
    local began, ended = thread:get("started"), thread:get("last_success")
    if began ~= nil and (first == nil or began < first) then first = began end
    if ended ~= nil and (final == nil or ended > final) then final = ended end
  end
  local seconds = (first and final) and (final - first) or 0
  io.write(string.format("successful: %d in %.3f s, fillers %d\\n", total, seconds, filled))
end
"""
AGORA_SUCCESS = '"ok":true'  # the envelope of every successful Agora answer (the ceiling app has none)


def lua_success_marker(marker: str | None, *, filler_prefix: str | None = None) -> str:
    """The Lua lines that set what a successful body must contain (None: any 2xx is a success), and how the
    filler answers a write script's stopped threads get begin (they are left out of every count)."""
    lines = f"success_marker = {'nil' if marker is None else json.dumps(marker)}\n"
    return lines + f"filler_prefix = {'nil' if filler_prefix is None else json.dumps(filler_prefix)}\n"


@dataclass
class Run:
    scenario: str
    target: str  # "agora", "ceiling" (raw endpoint or plain JSON), "pgbench" (the replayed statements) or "minimal"
    processes: int
    connections: int = CONNECTIONS  # wrk's (or pgbench's) concurrent connections
    requests: int = 0
    seconds: float | None = None  # from the first request to the last success (None: pgbench, whose tps is its own)
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    non_2xx: int = 0
    socket_errors: int = 0
    failed: int = 0  # answers that were not successes: non-2xx, or (on Agora) 2xx without the `ok` envelope
    prepared: int | None = None  # write scenarios: the distinct requests the timed run had to send
    peak_rss_mb: list[float] = field(default_factory=list)
    wrk_cpu_s: float = 0.0
    cpu_busy_pct: float | None = None
    ratio: float | None = None
    ratio_minimal: float | None = None  # write scenarios: req/s over the minimal transaction's (bench/minimal/)
    statements: float | None = None  # SQL statements per request (write scenarios, from the capture)
    round_trips: float | None = None  # round trips to PostgreSQL per request
    note: str = ""

    @property
    def errors(self) -> int:
        return self.failed + self.socket_errors


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


#: Where the servers' own output goes (a wrk run ending mid-request makes the server log a disconnect).
SERVER_LOG = Path(tempfile.gettempdir()) / "agora-bench-servers.log"


def start_server(target: str, count: int, env: dict[str, str], ready_path: str, *, factory: bool = False) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", target, *(["--factory"] if factory else [])]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(count)]
    command += ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]
    with SERVER_LOG.open("a") as log:
        log.write(f"--- {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", count)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"bench: {target} exited with {process.returncode} on start (see {SERVER_LOG})")
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


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unparseable wrk latency {text!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2)], 3)


def parse_wrk(output: str, run: Run) -> None:
    answered = int(match.group(1)) if (match := re.search(r"(\d+) requests in", output)) else 0
    if match := re.search(r"^successful: (\d+) in ([\d.]+) s, fillers (\d+)$", output, re.MULTILINE):
        successful, run.seconds, fillers = int(match.group(1)), float(match.group(2)), int(match.group(3))
        run.requests = answered - fillers
        run.failed = run.requests - successful
        run.rps = round(successful / run.seconds, 1) if run.seconds > 0 else 0.0
    else:
        raise SystemExit(
            f"bench: wrk printed no count of successful answers (is LUA_COUNTING in the script?):\n{output}"
        )
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


def wrk(
    url: str, script: Path, seconds: int, *, latency: bool, connections: int = CONNECTIONS
) -> tuple[str, float, float]:
    """Run wrk; return its output, its own CPU seconds (user + sys) and the machine's busy % meanwhile."""
    command = [WRK, f"-t{THREADS}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s"]
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


def measure(
    server: Server,
    scenario: str,
    target: str,
    script: Path,
    *,
    seconds: int,
    warmup: int,
    warmup_script: Path | None = None,
    connections: int = CONNECTIONS,
) -> Run:
    """A warm-up (with its own script when requests must not repeat), then the timed wrk run."""
    if warmup > 0:
        wrk(server.url, warmup_script or script, warmup, latency=False, connections=connections)
    workers = server.workers()
    reset_peak_rss(workers)
    output, cpu, busy = wrk(server.url, script, seconds, latency=True, connections=connections)
    run = Run(
        scenario=scenario,
        target=target,
        processes=server.count,
        connections=connections,
        wrk_cpu_s=round(cpu, 2),
        cpu_busy_pct=busy,
    )
    parse_wrk(output, run)
    run.peak_rss_mb = peak_rss_mb(workers)
    flag = "  ERRORS" if run.errors else ""
    print(
        f"  {target:>7} x{server.count} c{connections:<2} {scenario:<24} {run.rps:>9.0f} req/s  p50 {run.p50_ms} ms"
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
