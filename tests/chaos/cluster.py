"""The soak's cluster: a private PostgreSQL that can crash, two API processes that can be SIGKILLed, one webhook
delivery worker (reliability.md §7.1), each a real process with its output in the run's folder.

PostgreSQL is pgserver's bundled server in a folder of its own (not the test session's: crashing that one would
hit every other test), started by pgserver and then driven with pg_ctl on the same data folder and socket, as the
`pgserver` system user when we are root, as pgserver itself does. pgserver is told not to stop it at exit: after a
restart its record of the server names a dead postmaster, so the cluster stops what it started itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psycopg

from app.repo import migrate
from tests.support import ROOT, TEST_SECRET_KEY, free_port, start_servers

#: The API processes write events and send nothing; the worker process delivers (as in production with workers).
API_SETTINGS = {
    "webhook_worker": "false",
    "webhook_allow_cidrs": "127.0.0.1/32",
    # The soak's callers are few and busy; the rate limits have tests of their own.
    "rate_limit_per_minute": "1000000",
    "anonymous_rate_limit_per_minute": "1000000",
    "log_format": "json",
}
WORKER_SETTINGS = {
    "webhook_allow_cidrs": "127.0.0.1/32",
    "webhook_timeout_seconds": "4",
    # 5 s, 5 min, 30 min, ... become 10 ms, 0.6 s, 3.6 s, ...: a failing receiver is retried within the run.
    "webhook_retry_scale": "0.002",
    "events_poll_seconds": "0.5",
    "log_format": "json",
    "log_level": "info",
}


@dataclass(frozen=True)
class Fault:
    kind: str  # "api_kill" or "pg_restart"
    target: str  # the URL killed, or "postgresql"
    started: float  # time.time() when the fault was injected
    ended: float  # ... when the service was back (the process answers /healthz; PostgreSQL accepts connections)

    def as_json(self) -> dict:
        return {"kind": self.kind, "target": self.target, "started": self.started, "seconds": self.ended - self.started}


class Postgres:
    """pgserver's PostgreSQL in `folder`, which pg_ctl can crash and start again on the same data and socket."""

    def __init__(self, log: Path, database: str = "agora_chaos") -> None:
        import pgserver
        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.utils import PostmasterInfo

        # A short path of its own under /tmp, as tests/support.py's: the socket's path must stay under ~100
        # characters, and the `pgserver` user must reach it (pytest makes /tmp/pytest-of-<user> private).
        self.data = Path(tempfile.mkdtemp(prefix="agora-chaos-", dir="/tmp")) / "pg"
        self.log = log  # pg_ctl's own output
        server = pgserver.get_server(self.data, cleanup_mode=None)
        info = PostmasterInfo.read_from_pgdata(self.data)
        assert info is not None and info.socket_dir is not None
        self.socket_dir, self.port = info.socket_dir, info.port or 5432
        self.user = server.system_user  # None unless we are root
        self.pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
        if "(1 row)" not in server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';"):
            server.psql(f'CREATE DATABASE "{database}";')
        self.url = server.get_uri(database)

    def _ctl(self, *args: str) -> None:
        with self.log.open("ab") as output:  # a file, not a pipe: the postmaster pg_ctl starts would inherit it
            command = [self.pg_ctl, "-D", str(self.data), *args]
            subprocess.run(command, user=self.user, check=True, stdout=output, stderr=output, timeout=60)

    def crash(self) -> None:
        """SIGQUIT to the postmaster: no checkpoint, WAL replayed at the next start."""
        self._ctl("-m", "immediate", "stop")

    def start(self) -> None:
        log = str(self.data / "log")
        self._ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-o", f"-p {self.port}", "-l", log, "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self._ctl("-m", "fast", "-w", "stop")

    def accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as connection:
                connection.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False


@dataclass
class Cluster:
    folder: Path
    postgres: Postgres
    api_urls: list[str]
    api_processes: list[subprocess.Popen]
    worker: subprocess.Popen | None = None
    faults: list[Fault] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @classmethod
    def start(cls, folder: Path, *, apis: int = 2) -> Cluster:
        folder.mkdir(parents=True, exist_ok=True)
        postgres = Postgres(folder / "pg_ctl.log")
        migrate.upgrade(postgres.url)
        cluster = cls(folder, postgres, [], [])
        try:
            ports = [free_port() for _ in range(apis)]
            for index, port in enumerate(ports):
                process = cluster._start_api(index, port)
                cluster.api_urls.append(f"http://127.0.0.1:{port}")
                cluster.api_processes.append(process)
            cluster.worker = subprocess.Popen(
                [str(Path(sys.executable).with_name("agora")), "worker"],
                cwd=ROOT,
                env=cluster.environment(WORKER_SETTINGS),
                stdout=subprocess.DEVNULL,
                stderr=cluster._log("worker"),
            )
        except BaseException:
            cluster.stop()
            cluster.remove_database()
            raise
        return cluster

    def environment(self, settings: dict[str, str]) -> dict[str, str]:
        return {
            **os.environ,
            "AGORA_DATABASE_URL": self.postgres.url,
            "AGORA_SECRET_KEY": TEST_SECRET_KEY,
            **{f"AGORA_{name.upper()}": value for name, value in settings.items()},
        }

    def _log(self, name: str) -> IO[bytes]:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - closed by stop()
        self._logs.append(log)
        return log

    def _start_api(self, index: int, port: int) -> subprocess.Popen:
        started = start_servers(self.postgres.url, ports=[port], output=self._log(f"api-{index}"), **API_SETTINGS)
        return started.processes[0]

    def admin_key(self) -> str:
        """An admin key the way an operator of the service makes the first one: `agora admin create-key`."""
        agora = str(Path(sys.executable).with_name("agora"))
        done = subprocess.run(
            [agora, "admin", "create-key", "--name", "soak"],
            cwd=ROOT,
            env=self.environment({}),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return done.stdout.strip().splitlines()[-1]

    # --- faults --------------------------------------------------------------------------------------------------

    async def kill_api(self, index: int) -> Fault:
        """SIGKILL one API process and start it again at once on the same port; returns when it answers."""
        url, process = self.api_urls[index], self.api_processes[index]
        started = time.time()
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait)
        port = int(url.rsplit(":", 1)[1])
        self.api_processes[index] = await asyncio.to_thread(self._start_api, index, port)
        fault = Fault("api_kill", url, started, time.time())
        self.faults.append(fault)
        return fault

    async def restart_postgres(self) -> Fault:
        """An immediate shutdown (a crash to every client), then a start on the same data folder and socket."""
        started = time.time()
        await asyncio.to_thread(self.postgres.crash)
        await asyncio.to_thread(self.postgres.start)
        fault = Fault("pg_restart", "postgresql", started, time.time())
        self.faults.append(fault)
        return fault

    # --- the end -------------------------------------------------------------------------------------------------

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()

    def stop(self) -> None:
        self.stop_worker()
        for process in self.api_processes:
            if process.poll() is None:
                process.terminate()
        for process in self.api_processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.postgres.stop()
        for log in self._logs:
            log.close()

    def remove_database(self) -> None:
        """Delete PostgreSQL's folder, keeping its server log beside the others."""
        with contextlib.suppress(OSError):
            shutil.copyfile(self.postgres.data / "log", self.folder / "postgresql.log")
        shutil.rmtree(self.postgres.data.parent, ignore_errors=True)
