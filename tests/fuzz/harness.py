"""The schemathesis run (reliability.md §5, FUZZ-1..5) against real server processes, shared by the CI test and
`make fuzz`.

Two ordinary `uvicorn` processes serve the app on a database of its own. The parties are made the way an operator
of the service makes them: an admin key (as `agora admin create-key` does), then operators, agents and credits
through the admin and operator APIs. Two `schemathesis run` processes then fuzz at once, one per server: the
examples, coverage and fuzzing phases against the first, the stateful phase against the second, so the writes of
both contend on one database through two connection pools. Afterwards the admin audit must find the ledger clean.

What is fixed for every run (checks, phases, the exceptions with their reasons) is in `schemathesis.toml`; the
hooks that pick each operation's key are in `tests/fuzz/hooks.py`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.services import admin
from tests.support import ROOT, ServerProcesses, run_committed, start_servers

CONFIG = ROOT / "schemathesis.toml"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Every fuzz key may make as many requests as the fuzzer sends; so may requests without a valid key (the fuzzer
# sends many on purpose). The webhook worker is off: the SSRF guard still judges every URL at registration (what
# is fuzzed), but a public URL the fuzzer registers must not be called from this machine.
SERVER_SETTINGS = {
    "rate_limit_per_minute": "1000000",
    "anonymous_rate_limit_per_minute": "1000000",
    "webhook_worker": "false",
}
# Enough for the stateful phase to post many tasks at the largest budget the schema allows (1,000,000,000).
GRANTS = 20
GRANT = 1_000_000_000


@dataclass(frozen=True)
class Parties:
    admin_key: str
    operator_key: str  # an operator that owns none of the fuzz agents, so rotating or pausing its agents is harmless
    agent_key: str  # the poster's side
    worker_key: str  # the worker's side: an agent of another operator
    protected_agent_ids: tuple[int, ...]
    decoy_agent_id: int

    def environment(self) -> dict[str, str]:
        return {
            "AGORA_FUZZ_ADMIN_KEY": self.admin_key,
            "AGORA_FUZZ_OPERATOR_KEY": self.operator_key,
            "AGORA_FUZZ_AGENT_KEY": self.agent_key,
            "AGORA_FUZZ_WORKER_KEY": self.worker_key,
            "AGORA_FUZZ_PROTECTED_AGENTS": ",".join(str(i) for i in self.protected_agent_ids),
            "AGORA_FUZZ_DECOY_AGENT": str(self.decoy_agent_id),
        }


def _data(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["data"]


def make_parties(database_url: str, base_url: str) -> Parties:
    admin_key = run_committed(database_url, lambda uow: admin.create_admin_key(uow, name="fuzz"))
    with httpx.Client(base_url=f"{base_url}/api/v1", timeout=30) as http:

        def as_(key: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {key}"}

        def operator(name: str) -> dict:
            return _data(http.post("/admin/operators", json={"name": name}, headers=as_(admin_key)), 201)

        def agent(operator_key: str, name: str) -> dict:
            body = {"name": name, "description": "An agent the fuzzer acts as", "capabilities": ["python"]}
            return _data(http.post("/operator/agents", json=body, headers=as_(operator_key)), 201)

        poster, worker, spare = operator("fuzz-poster"), operator("fuzz-worker"), operator("fuzz-operator")
        poster_agent = agent(poster["api_key"], "fuzz-poster-agent")
        worker_agent = agent(worker["api_key"], "fuzz-worker-agent")
        decoy = agent(spare["api_key"], "fuzz-decoy-agent")
        for owner in (poster, worker):
            for _ in range(GRANTS):
                body = {"amount": GRANT, "reason": "fuzz run budget"}
                _data(http.post(f"/admin/operators/{owner['id']}/credits", json=body, headers=as_(admin_key)), 201)
    return Parties(
        admin_key=admin_key,
        operator_key=spare["api_key"],
        agent_key=poster_agent["api_key"],
        worker_key=worker_agent["api_key"],
        protected_agent_ids=(poster_agent["id"], worker_agent["id"]),
        decoy_agent_id=decoy["id"],
    )


@dataclass
class RunResult:
    """What the schemathesis processes reported, and what the hooks saw on the wire."""

    exit_codes: list[int]
    failures: list[dict]  # one per failed junit test case: operation and message
    calls: list[dict]  # one per request the fuzzer sent (the hooks' log)
    outputs: list[str]
    seconds: float
    dropped: list[dict] = field(default_factory=list)  # failures tests/fuzz/exceptions.py accepted
    peer_probes: int = 0  # reads object_level_authorization replayed as the other agent
    # Errors the servers logged (a 500's traceback): these also catch the checks' own probe requests, which the
    # hooks do not see.
    server_log_errors: list[str] = field(default_factory=list)
    audit: dict = field(default_factory=dict)

    @property
    def cases_per_phase(self) -> dict[str, int]:
        return dict(Counter(call["phase"] for call in self.calls))

    @property
    def server_errors(self) -> list[dict]:
        return [call for call in self.calls if call["status"] >= 500]

    def summary(self) -> str:
        statuses = Counter(call["status"] for call in self.calls)
        return (
            f"cases per phase {self.cases_per_phase}; {len(self.calls)} requests; statuses {dict(sorted(statuses.items()))}; "
            f"{len(self.failures)} failures; {len(self.server_errors)} 5xx; "
            f"{len(self.server_log_errors)} errors in the servers' log; exit codes {self.exit_codes}; "
            f"{self.peer_probes} peer probes; accepted by tests/fuzz/exceptions.py {dict(Counter(d['dropped'] for d in self.dropped))}; "
            f"audit ok={self.audit.get('ok')} violations={self.audit.get('violations')}; {self.seconds:.0f} s"
        )


def _failure(operation: str, check: str, title: str, text: str = "", **found: object) -> dict:
    return {
        "operation": operation,
        "check": check,
        "title": title,
        "status": None,
        "body": "",
        "curl": "",
        "text": text,
        **found,
    }


def _parse_failure(operation: str, text: str) -> list[dict]:
    """Schemathesis' failure text as records: one per check that failed, with the response and the reproduction."""
    records = []
    for block in re.split(r"^\d+\. Test Case ID: ", text, flags=re.MULTILINE)[1:]:
        checks = re.findall(r"^- (ST\d+|[A-Z]+\d*) (.+)$", block, flags=re.MULTILINE) or [("?", block.split("\n")[0])]
        status = re.search(r"^\[(\d{3})\] .*:$", block, flags=re.MULTILINE)
        body = re.search(r"^\[\d{3}\] .*:\n\n\s+(.+)$", block, flags=re.MULTILINE)
        curls = re.findall(r"^\s+(curl .+)$", block, flags=re.MULTILINE)
        for code, title in checks:
            found = {
                "status": int(status.group(1)) if status else None,
                "body": body.group(1).strip().strip("`")[:1000] if body else "",
                "curl": curls[-1] if curls else "",
            }
            records.append(_failure(operation, code, title.strip(), block[:6000], **found))
    return records


def _junit_failures(path: Path) -> list[dict]:
    if not path.exists():
        return [_failure("(no junit report)", "?", str(path))]
    failures = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name") or "?"
        for problem in [*case.findall("failure"), *case.findall("error")]:
            text = problem.text or problem.get("message") or ""
            failures.extend(_parse_failure(name, text) or [_failure(name, problem.get("message") or "?", "", text)])
    return failures


def findings_markdown(result: RunResult) -> str:
    """The failures grouped by check and operation, one sample each, as the findings file wants them."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for failure in result.failures:
        key = (failure["check"], failure["title"], failure["operation"])
        groups.setdefault(key, []).append(failure)
    lines = [f"# Fuzz findings\n\n{result.summary()}\n"]
    for (check, title, operation), items in sorted(groups.items()):
        sample = items[0]
        lines += [
            f"## {check} {title}: {operation} ({len(items)}x)\n",
            f"Response: {sample['status']} `{sample['body'][:600]}`\n",
            f"```\n{sample['curl']}\n```\n",
        ]
    for call in result.server_errors:
        lines += [f"## 5xx {call['operation']} ({call['phase']})\n", f"```\n{json.dumps(call, indent=1)[:3000]}\n```\n"]
    return "\n".join(lines)


@dataclass(frozen=True)
class Step:
    """One `schemathesis run`: its phases, its operations and what else it needs."""

    name: str
    phases: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # A stateful scenario counts as one example however many calls it chains, and the lane has time to spare.
    examples_factor: int = 1


# What each server gets, in order; the two lanes run at the same time. The stateful phase is the shortest, so the
# object-level authorization run follows it: only the agent operations, everything sent as the poster and every
# read replayed as the worker (tests/fuzz/hooks.py).
LANES: tuple[tuple[Step, ...], ...] = (
    (Step("phases", ("examples", "coverage", "fuzzing")),),
    (
        Step("stateful", ("stateful",), examples_factor=5),
        Step(
            "peers",
            ("fuzzing", "stateful"),
            ("--exclude-path-regex", r"^/(healthz|readyz)$|^/api/v1/(admin|operator)/|^/api/v1/agents/register$"),
            (("AGORA_FUZZ_PEERS", "1"),),
        ),
    ),
)


def _scaled(args: list[str], factor: int) -> list[str]:
    """`args` with its (last) --max-examples multiplied by `factor`."""
    examples = None
    for index, arg in enumerate(args):
        if arg in ("-n", "--max-examples") and index + 1 < len(args):
            examples = args[index + 1]
        elif arg.startswith("--max-examples="):
            examples = arg.split("=", 1)[1]
    if factor == 1 or examples is None:
        return args
    return [*args, "--max-examples", str(int(examples) * factor)]


def _run_step(
    step: Step, url: str, base_env: dict[str, str], args: list[str], out: Path, cache: Path, timeout: float | None
) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "calls.ndjson").unlink(missing_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    env = {**base_env, "AGORA_FUZZ_LOG": str(out / "calls.ndjson"), **dict(step.env)}
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/schema/openapi.json",
        "--phases",
        ",".join(step.phases),
        "--report",
        "junit",
        "--report-junit-path",
        str(out / "junit.xml"),
        *step.args,
        *_scaled(args, step.examples_factor),
    ]
    with open(out / "output.txt", "w", encoding="utf-8") as output:
        try:
            run = subprocess.run(
                command, cwd=cache, env=env, stdout=output, stderr=subprocess.STDOUT, check=False, timeout=timeout
            )
        except subprocess.TimeoutExpired:  # killed; its JUnit report is missing, which fails the run
            output.write(f"\nkilled after {timeout} s\n")
            return -9
        return run.returncode


def run_schemathesis(
    servers: ServerProcesses,
    parties: Parties,
    args: list[str],
    report_dir: Path,
    cache_dir: Path,
    timeout: float | None = None,
) -> RunResult:
    """Each lane of `LANES` against its own server, the lanes at the same time; returns when all have finished.
    `cache_dir` keeps the failing cases schemathesis replays first on the next run (a fresh one per run makes a
    run reproducible). A run still going after `timeout` seconds is killed and fails."""
    report_dir.mkdir(parents=True, exist_ok=True)
    base_env = {
        **os.environ,
        **parties.environment(),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "NO_COLOR": "1",
    }
    started = time.monotonic()
    exit_codes: dict[str, int] = {}

    def lane(steps: tuple[Step, ...], url: str) -> None:
        for step in steps:
            out, cache = report_dir / step.name, cache_dir / step.name
            try:
                exit_codes[step.name] = _run_step(step, url, base_env, args, out, cache, timeout)
            except Exception as error:  # reported as this step's output; its missing JUnit report fails the run
                exit_codes[step.name] = -1
                out.mkdir(parents=True, exist_ok=True)
                (out / "output.txt").write_text(f"the harness could not run this step: {error!r}\n", encoding="utf-8")

    threads = [
        threading.Thread(target=lane, args=(steps, servers.urls[index % len(servers.urls)]))
        for index, steps in enumerate(LANES)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures, calls, outputs, dropped, probes = [], [], [], [], 0
    for step in (step for steps in LANES for step in steps):
        out = report_dir / step.name
        output = out / "output.txt"
        outputs.append(output.read_text(encoding="utf-8") if output.exists() else f"{step.name}: no output")
        failures.extend(_junit_failures(out / "junit.xml"))
        log = out / "calls.ndjson"
        for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
            record = json.loads(line)
            if "dropped" in record:
                dropped.append(record)
            elif "peer_probes" in record:
                probes += record["peer_probes"]
            else:
                calls.append(record)
    codes = [exit_codes.get(step.name, -1) for steps in LANES for step in steps]
    return RunResult(codes, failures, calls, outputs, time.monotonic() - started, dropped, probes)


def verdict(result: RunResult) -> list[str]:
    """Everything that makes the run fail, in words; empty when it passed."""
    problems = [
        f"{f['operation']}: {f['check']} {f['title']} [{f['status']}] {f['body'][:200]}" for f in result.failures
    ]
    problems += [f"5xx from {call['operation']} ({call['phase']}): {call['status']}" for call in result.server_errors]
    problems += [f"the servers logged: {line[:300]}" for line in result.server_log_errors]
    if not result.audit.get("ok"):
        problems.append(f"ledger audit not clean: {result.audit.get('violations')}")
    for phase in ("coverage", "fuzzing", "stateful"):
        if not result.cases_per_phase.get(phase):
            problems.append(f"the {phase} phase sent no request")
    if any(code != 0 for code in result.exit_codes) and not problems:
        problems.append(f"schemathesis exited with {result.exit_codes} (see its output)")
    return problems


def audit(base_url: str, admin_key: str) -> dict:
    response = httpx.get(
        f"{base_url}/api/v1/admin/ledger/audit", headers={"Authorization": f"Bearer {admin_key}"}, timeout=120
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def fuzz(
    database_url: str,
    args: list[str],
    report_dir: Path,
    cache_dir: Path | None = None,
    timeout: float | None = None,
) -> RunResult:
    """Start the servers on `database_url` (migrated), make the parties, fuzz, audit, stop the servers. Reports go to
    `report_dir`: per run its output, JUnit and every request's status, and the servers' log."""
    report_dir.mkdir(parents=True, exist_ok=True)
    # The servers' own log (a 5xx's traceback, found by the request_id in its response) stays with the reports.
    with open(report_dir / "servers.log", "wb") as server_log:
        servers = start_servers(database_url, count=2, output=server_log, **SERVER_SETTINGS)
        try:
            parties = make_parties(database_url, servers.urls[0])
            cache_dir = cache_dir or report_dir / "cache"
            result = run_schemathesis(servers, parties, args, report_dir, cache_dir, timeout)
            result.audit = audit(servers.urls[1], parties.admin_key)
        finally:
            servers.stop()
    result.server_log_errors = server_log_errors(report_dir / "servers.log")
    return result


def server_log_errors(path: Path) -> list[str]:
    """The error-level lines of the servers' JSON log (an unhandled exception, a failed commit)."""
    errors = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # uvicorn's own lines ("Invalid HTTP request received." for the fuzzer's raw bytes)
        if isinstance(record, dict) and record.get("level") in ("error", "critical"):
            errors.append(line)
    return errors
