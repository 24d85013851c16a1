"""The second write ceiling: pgbench running, per request, the least SQL a correct implementation sends.

Beside the replay of Agora's own statements (`tests/bench/replay.py`), each write scenario has a hand-written
pgbench script in `bench/minimal/<scenario>.sql` against Agora's real schema: authentication and the rate limit,
the idempotency claim, the target's row lock, the state change, its ledger transfer where credits move, one outbox
row, the stored response and COMMIT, pipelined wherever a careful implementation could (each file's comment says
why each statement is there and why nothing less would do).

The requests are real targets of the database, chosen as Agora's are (`writes.choose`, from the state just before
the run, so after the replay has committed its own), each sent once. Their values reach pgbench the way the
replay's do: one row per request in an unlogged table, read by primary key at the start of each transaction
(`replay.values_table`, `replay.lookup_header`), whose cost is measured alone and taken off
(`replay.run_once_each`). The constants (the response body, as long as the one Agora stored for this scenario,
the rate limit's emission interval, a key prefix for this run) are pgbench `-D` variables.

A pgbench script cannot stop on a failed check of its own, so after the run every target is checked to be in the
state its request leaves it in, and every request to have stored its response: a script that ran but did the
wrong thing fails the benchmark instead of flattering it.
"""

from __future__ import annotations

import json
import re
import secrets
import statistics
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from domain.keys import hash_key
from domain.ledger import REVENUE_SHARDS
from tests.bench import replay, writes
from tests.bench.load import ROOT

SCRIPTS = ROOT / "bench" / "minimal"


CLAIM_MARK = "-- @claim:"


def splice_claim(script: str) -> str:
    """The script with its @claim line replaced by bench/minimal/claim.sql, the opening all five share."""
    shared = (SCRIPTS / "claim.sql").read_text()
    lines = script.splitlines(keepends=True)
    marked = [i for i, line in enumerate(lines) if line.startswith(CLAIM_MARK)]
    if len(marked) != 1:
        raise SystemExit(f"bench: a minimal script needs exactly one '{CLAIM_MARK}' line, found {len(marked)}")
    return "".join(lines[: marked[0]]) + shared + "".join(lines[marked[0] + 1 :])


DEFAULT_BODY_BYTES = 400  # when no capture says how long Agora's stored response is

# The requests as the client sends them: the key's hash, the ids in the path, the JSON body; `n` numbers them.
_REQUESTS = """
WITH r AS (
    SELECT * FROM unnest(%(key_hash)s::text[], %(first_id)s::bigint[], %(second_id)s::bigint[], %(body)s::jsonb[])
           WITH ORDINALITY AS r (key_hash, first_id, second_id, body, n)
)
"""


@dataclass(frozen=True)
class Minimal:
    scenario: str
    # After _REQUESTS: one row per request, in order, with the values the script reads (named as it reads them):
    # what the client sends, and what the script's earlier round trips would have returned to the app.
    values: str
    # How many of the requests left their target as a successful one does ({table}: the values, as text).
    check: str

    @property
    def path(self) -> Path:
        return SCRIPTS / f"{self.scenario.replace(' ', '-')}.sql"


MINIMALS = [
    Minimal(
        "post task",
        values="""
        SELECT r.key_hash, r.body->>'title' AS title, r.body->>'description' AS description,
               r.body->>'budget_credits' AS budget
          FROM r ORDER BY r.n
        """,
        check="""
        SELECT count(*) FROM task t JOIN account e ON e.task_id = t.id
         WHERE t.id > %(task_before)s AND t.status = 'open' AND e.balance = t.budget_credits
           AND EXISTS (SELECT 1 FROM transfer x WHERE x.task_id = t.id AND x.kind = 'escrow_hold')
        """,
    ),
    Minimal(
        "bid",
        values="""
        SELECT r.key_hash, r.first_id AS task_id, r.body->>'proposed_credits' AS proposed, t.poster_agent_id
          FROM r JOIN task t ON t.id = r.first_id ORDER BY r.n
        """,
        check="""
        SELECT count(*) FROM {table} v JOIN api_key k ON k.key_hash = v.key_hash
          JOIN claim c ON c.task_id = v.task_id::bigint AND c.agent_id = k.agent_id AND c.status = 'pending'
                      AND c.proposed_credits = v.proposed::bigint
        """,
    ),
    Minimal(
        "accept bid",
        values="""
        SELECT r.key_hash, r.first_id AS task_id, r.second_id AS claim_id, c.agent_id AS worker_id,
               c.proposed_credits AS price
          FROM r JOIN claim c ON c.id = r.second_id ORDER BY r.n
        """,
        check="""
        SELECT count(*) FROM {table} v
          JOIN task t ON t.id = v.task_id::bigint AND t.status = 'claimed' AND t.accepted_claim_id = v.claim_id::bigint
                     AND t.claimed_by_agent_id = v.worker_id::bigint AND t.price_credits = v.price::bigint
          JOIN claim c ON c.id = t.accepted_claim_id AND c.status = 'accepted'
         WHERE NOT EXISTS (SELECT 1 FROM claim o WHERE o.task_id = t.id AND o.status = 'pending')
        """,
    ),
    Minimal(
        "deliver",
        values="""
        SELECT r.key_hash, r.first_id AS task_id, r.body->>'content' AS content, t.assignment, t.poster_agent_id,
               (SELECT count(*) + 1 FROM deliverable d WHERE d.task_id = t.id AND d.assignment = t.assignment)
                   AS revision
          FROM r JOIN task t ON t.id = r.first_id ORDER BY r.n
        """,
        check="""
        SELECT count(*) FROM {table} v JOIN task t ON t.id = v.task_id::bigint AND t.status = 'delivered'
          JOIN deliverable d ON d.task_id = t.id AND d.assignment = v.assignment::int
                            AND d.revision_number = v.revision::int AND d.status = 'submitted'
         WHERE d.revision_number <= t.max_revisions + 1
        """,
    ),
    Minimal(
        "accept deliverable",
        values=f"""
        SELECT r.key_hash, r.first_id AS task_id, r.second_id AS deliverable_id, t.claimed_by_agent_id AS worker_id,
               t.budget_credits AS budget, t.price_credits AS price, e.id AS escrow_id, w.id AS worker_wallet,
               p.id AS poster_wallet, rv.id AS revenue_id
          FROM r JOIN task t ON t.id = r.first_id
          JOIN account rv ON rv.kind = 'platform_revenue' AND rv.shard = t.id %% {REVENUE_SHARDS}  -- domain.ledger.revenue_shard
          JOIN account e ON e.task_id = t.id
          JOIN agent a ON a.id = t.claimed_by_agent_id
          JOIN account w ON w.operator_id = a.operator_id
          JOIN account p ON p.operator_id = t.poster_operator_id
         ORDER BY r.n
        """,
        check="""
        SELECT count(*) FROM {table} v JOIN task t ON t.id = v.task_id::bigint AND t.status = 'completed'
          JOIN deliverable d ON d.id = v.deliverable_id::bigint AND d.status = 'accepted'
          JOIN account e ON e.id = v.escrow_id::bigint AND e.balance = 0
          JOIN transfer x ON x.task_id = t.id AND x.kind = 'settlement'
        """,
    ),
]
BY_SCENARIO = {m.scenario: m for m in MINIMALS}


def shape(script: str) -> tuple[int, int]:
    """(statements, round trips) of a pgbench script: a statement outside a pipeline is a round trip of its own,
    a pipeline is one."""
    statements = round_trips = 0
    in_pipeline = False
    for line in script.splitlines():
        text = line.strip()
        if not text or text.startswith("--"):
            continue
        if text in ("\\startpipeline", "\\endpipeline"):
            in_pipeline = text == "\\startpipeline"
            round_trips += not in_pipeline
        elif not text.startswith("\\") and (text.endswith(";") or "\\gset" in text):
            statements += 1
            round_trips += not in_pipeline
    return statements, round_trips


def response_bytes(capture_file: Path) -> int:
    """How long the responses Agora stored for this scenario were (sealed, as bytes), the median."""
    sizes = []
    for line in capture_file.read_text().splitlines():
        for step in json.loads(line)["steps"] if line.strip() else []:
            for statement in step:
                if statement["sql"].lstrip().startswith("INSERT INTO idempotency_key"):
                    body = next(v for v in statement["values"] if v and v.startswith("\\x"))
                    sizes.append((len(body) - 2) // 2)
    return int(statistics.median(sizes)) if sizes else DEFAULT_BODY_BYTES


def _requests(chosen: list[writes.WriteRequest]) -> dict[str, list]:
    ids = [[int(i) for i in re.findall(r"/(\d+)", r.path)] + [None, None] for r in chosen]
    return {
        "key_hash": [hash_key(r.key) for r in chosen],
        "first_id": [i[0] for i in ids],
        "second_id": [i[1] for i in ids],
        "body": [r.body or "{}" for r in chosen],
    }


def run(url: str, scenario: str, requests: int, folder: Path, *, body_bytes: int, emission: str) -> replay.Ceiling:
    """Choose up to `requests` targets, run the scenario's minimal script once for each (committing), check them."""
    minimal = BY_SCENARIO[scenario]
    write = next(s for s in writes.SCENARIOS if s.name == scenario)
    chosen = writes.choose(url, write, requests)
    per_client = len(chosen) // replay.CLIENTS
    if per_client < 1:
        raise SystemExit(f"bench: only {len(chosen)} targets left for the minimal {scenario}")
    chosen = chosen[: per_client * replay.CLIENTS]
    table = f"bench_minimal_{scenario.replace(' ', '_')}"
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(_REQUESTS + minimal.values, _requests(chosen))
        names = [column.name for column in cursor.description]
        rows = [[replay.NULL if value is None else str(value) for value in row] for row in cursor.fetchall()]
        if len(rows) != len(chosen):
            raise SystemExit(f"bench: {len(rows)} of {len(chosen)} minimal {scenario} targets found their rows")
        (task_before,) = connection.execute("SELECT coalesce(max(id), 0) FROM task").fetchone()
        replay.values_table(connection, table, names, rows)
    body = splice_claim(minimal.path.read_text())
    header = replay.lookup_header(table, names, per_client)
    key_prefix = f"minimal-{uuid.uuid4().hex[:12]}"
    constants = {
        "run": key_prefix,
        "emission": emission,
        "window": "1 minute",
        "fingerprint": secrets.token_hex(32),
        "body": "\\x01" + secrets.token_hex(max(body_bytes - 1, 1)),  # sealed: format byte 1, then ciphertext
    }
    result, lookup_tps, tps = replay.run_once_each(
        url, "\n".join(header) + "\n" + body, "\n".join(header) + "\n", constants, len(rows), per_client, folder
    )
    with psycopg.connect(url, autocommit=True) as connection:
        (done,) = connection.execute(minimal.check.replace("{table}", table), {"task_before": task_before}).fetchone()
        (stored,) = connection.execute(
            "SELECT count(*) FROM idempotency_key WHERE key LIKE %s", (key_prefix + "-%",)
        ).fetchone()
        connection.execute(f"DROP TABLE IF EXISTS {table}")
    if done != len(rows) or stored != len(rows):
        raise SystemExit(
            f"bench: the minimal {scenario} committed {result.transactions} transactions, but {done} of {len(rows)} "
            f"targets are in the state it should leave them in and {stored} responses were stored ({minimal.path})"
        )
    statements, round_trips = shape(body)
    return replay.Ceiling(
        raw=result,
        lookup_tps=lookup_tps,
        tps=tps,
        statements=statements,
        round_trips=round_trips,
        requests=len(rows),
    )
