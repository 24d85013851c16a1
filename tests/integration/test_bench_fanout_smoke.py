"""The webhook fan-out benchmark runs end to end on a tiny burst: worker processes, plain senders, sane rows.

Nothing timed is asserted: only that the harness runs, everything got delivered exactly once, and the rows are
complete. Two calls on one database: the second must not trip over what the first created.
"""

from __future__ import annotations

import psycopg
import pytest

from app.repo import migrate
from tests.bench.fanout import SCENARIO, fanout_runs
from tests.support import sibling_database

pytestmark = pytest.mark.live

KEYS = {
    "scenario",
    "target",
    "processes",
    "requests",
    "seconds",
    "rps",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "errors",
    "peak_rss_mb",
    "note",
}


def _webhooks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute("SELECT count(*) FROM webhook").fetchone()[0]


def _check(rows: list[dict], processes: list[int], deliveries: int) -> None:
    assert [(r["target"], r["processes"]) for r in rows] == [
        (target, count) for count in processes for target in ("agora", "ceiling")
    ]
    for r in rows:
        assert set(r) == KEYS
        assert r["scenario"] == SCENARIO
        assert r["requests"] == deliveries and r["errors"] == 0, r
        assert r["seconds"] > 0 and r["rps"] > 0
        assert r["p50_ms"] is not None and r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert len(r["peak_rss_mb"]) == r["processes"] and all(mb > 0 for mb in r["peak_rss_mb"])
        assert "receiver" in r["note"]
    assert all("exactly once: ok" in r["note"] for r in rows if r["target"] == "agora")


def test_the_fanout_harness_delivers_a_tiny_burst_and_reports_it(database_url):
    url = sibling_database(database_url, "agora_fanout")
    migrate.upgrade(url)

    _check(fanout_runs(url, processes=[1, 2], deliveries=40, hooks=4), [1, 2], 40)
    _check(fanout_runs(url, processes=[1], deliveries=30, hooks=5), [1], 30)
    assert _webhooks(url) == 4 + 5
