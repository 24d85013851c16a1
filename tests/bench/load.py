"""Servers under test and the load generator: start uvicorn, run wrk, read its figures and the servers' RSS."""

from __future__ import annotations

import contextlib
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
CONNECTIONS = 32
THREADS = 2
WRK = "wrk"
# wrk's setup() runs once per thread in the main Lua state; numbering the threads lets
# each one seed its generator or pick its own slice of the requests.
LUA_THREAD_NUMBERS = """local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end
"""


@dataclass
class Run:
    scenario: str
    target: str  # "agora", "ceiling" (raw endpoint or plain JSON) or "pgbench" (the replayed statements)
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
    statements: float | None = None  # SQL statements per request (write scenarios, from the capture)
    round_trips: float | None = None  # round trips to PostgreSQL per request
    note: str = ""

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


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


def measure(
    server: Server,
    scenario: str,
    target: str,
    script: Path,
    *,
    seconds: int,
    warmup: int,
    warmup_script: Path | None = None,
) -> Run:
    """A warm-up (with its own script when requests must not repeat), then the timed wrk run."""
    if warmup > 0:
        wrk(server.url, warmup_script or script, warmup, latency=False)
    workers = server.workers()
    reset_peak_rss(workers)
    output, cpu, busy = wrk(server.url, script, seconds, latency=True)
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
