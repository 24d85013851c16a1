"""`make bench` runs end to end on a tiny dataset: every scenario and its ceiling get measured and reported.

Nothing timed is asserted: only that the harness runs, every scenario served requests without one failing (a
write run whose prepared requests run out ends early instead of sending failures), each write's two pgbench
ceilings (the replay of Agora's statements, the minimal transaction of bench/minimal/) committed every
transaction, Agora's reads have their 4-connection latency rows, and the results come out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.live

SCENARIOS = {"GET task", "browse page 1", "search selective", "search broad"}
WRITES = {"post task", "bid", "accept bid", "deliver", "accept deliverable"}


def test_the_harness_measures_every_read_scenario_and_its_ceiling(tmp_path_factory):
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    # A short path: PostgreSQL's socket path must stay under ~100 characters.
    data = tmp_path_factory.mktemp("bench")
    results = data / "results"
    command = [sys.executable, "-m", "tests.bench.run", "--tasks", "2000", "--duration", "1", "--warmup", "0"]
    command += ["--processes", "2", "--repeat", "1", "--replay-requests", "64", "--parts", "reads,writes"]
    command += ["--data-dir", str(data / "d"), "--results-dir", str(results)]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr

    (json_file,) = results.glob("*.json")
    (md_file,) = results.glob("*.md")
    report = json.loads(json_file.read_text())
    runs = report["runs"]
    agora = {run["scenario"] for run in runs if run["target"] == "agora"}
    assert agora >= SCENARIOS | WRITES
    replayed = {run["scenario"]: run for run in runs if run["target"] == "pgbench"}
    assert set(replayed) == WRITES
    assert all(run["statements"] >= run["round_trips"] >= 2 for run in replayed.values())
    least = {run["scenario"]: run for run in runs if run["target"] == "minimal"}
    assert set(least) == WRITES
    assert all(run["statements"] >= run["round_trips"] == 3 for run in least.values())
    assert all(run["errors"] == 0 and run["requests"] >= 32 for run in least.values())
    assert any(name.startswith("browse") and "deep" in name for name in agora)
    assert any(run["target"] == "ceiling" and run["scenario"].startswith("plain") for run in runs)
    assert all(run["rps"] > 0 and run["requests"] > 0 for run in runs)
    assert [run for run in runs if run["errors"]] == []
    written = [run for run in runs if run["target"] == "agora" and run["scenario"] in WRITES]
    assert all(0 < run["requests"] <= run["prepared"] for run in written)
    assert all(run["ratio_minimal"] is not None for run in written)
    throughput = [run for run in runs if run["target"] == "agora" and run["connections"] == 32]
    assert all(run["ratio"] is not None for run in throughput)
    latency = {run["scenario"] for run in runs if run["target"] == "agora" and run["connections"] == 4}
    assert latency >= SCENARIOS and not latency & WRITES
    assert any(name.startswith("browse") and "deep" in name for name in latency)
    assert all(run["peak_rss_mb"] for run in runs if run["target"] not in ("pgbench", "minimal"))
    assert report["versions"]["postgresql"] and report["machine"]["cpus"]
    md = md_file.read_text()
    assert "| GET task | 2 | 32 | agora |" in md and "| GET task | 2 | 4 | agora |" in md
    assert "ratio to minimal" in md and "| accept deliverable | 32 | 32 | minimal |" in md
    assert any("every write >= 0.35x its minimal transaction" in line for line in report["targets"])
    assert any("at 4 connections" in line for line in report["targets"])
