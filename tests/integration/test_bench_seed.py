"""`python -m bench.seed`: a small synthetic marketplace, seeded twice into databases of its own, passes the ledger
audit, is the same for the same seed, is searchable, and leaves the schema as the migrations made it."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from app.repo import migrate
from app.services import audit, operators
from bench import seed as seeding
from bench.copy_rows import NotEmpty
from bench.dataset import Config, Dataset, agent_key, operator_key
from domain.keys import KeyKind, is_well_formed
from domain.ledger import REVENUE_SHARDS
from tests.support import run_committed, sibling_database

TASKS = 2000
CONFIG = Config(tasks=TASKS, seed=7, operators=40, agents_per_operator=3)

_TASKS_DIGEST = """
SELECT md5(string_agg(concat_ws('|', id, poster_operator_id, poster_agent_id, title, description, requirements,
                                budget_credits, category_id, status, claimed_by_agent_id, accepted_claim_id,
                                price_credits, max_revisions, created_at, search), '#' ORDER BY id)) FROM task
"""
_ENTRIES_DIGEST = """
SELECT md5(string_agg(concat_ws('|', id, transfer_id, account_id, amount, balance_after, account_version,
                                created_at), '#' ORDER BY id)) FROM entry
"""
_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
 WHERE schemaname = 'public' AND tablename IN ('task', 'claim', 'deliverable', 'account', 'transfer', 'entry')
"""


@pytest.fixture(scope="module")
def seeded(database_url: str) -> tuple[str, str, seeding.SeedSummary]:
    urls = []
    summary = None
    for name in ("agora_bench_seed_a", "agora_bench_seed_b"):
        url = sibling_database(database_url, name)
        migrate.upgrade(url)
        summary = seeding.seed(url, CONFIG, progress=False)
        urls.append(url)
    assert summary is not None
    return urls[0], urls[1], summary


def _one(url: str, query: str, params: tuple = ()) -> object:
    with psycopg.connect(url) as connection:
        row = connection.execute(query, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def test_row_counts_and_statuses(seeded):
    url, _, summary = seeded
    assert summary.rows["task"] == TASKS
    assert summary.rows["operator"] == CONFIG.operators
    assert summary.rows["agent"] == CONFIG.agents
    assert summary.rows["api_key"] == CONFIG.agents + CONFIG.operators
    assert summary.rows["account"] == TASKS + CONFIG.operators
    for table in ("task", "operator", "agent", "claim", "deliverable", "transfer", "entry"):
        assert _one(url, f"SELECT count(*) FROM {table}") == summary.rows[table], table
    # and the platform's: issuance and the revenue sub-accounts
    assert _one(url, "SELECT count(*) FROM account") == TASKS + CONFIG.operators + 1 + REVENUE_SHARDS
    with psycopg.connect(url) as connection:
        statuses = dict(connection.execute("SELECT status, count(*) FROM task GROUP BY status").fetchall())
    assert 0.08 * TASKS <= statuses["open"] <= 0.12 * TASKS
    assert {"claimed", "in_progress", "delivered", "completed", "cancelled"} <= set(statuses)
    # Every working or finished task has exactly one accepted bid, the one the task points to.
    assert (
        _one(
            url,
            """SELECT count(*) FROM task t WHERE t.status IN ('claimed','in_progress','delivered','completed')
               AND NOT EXISTS (SELECT 1 FROM claim c WHERE c.id = t.accepted_claim_id AND c.status = 'accepted'
                                AND c.agent_id = t.claimed_by_agent_id AND c.proposed_credits = t.price_credits)""",
        )
        == 0
    )
    assert _one(url, "SELECT count(*) FROM claim c JOIN task t ON t.id = c.task_id WHERE t.status = 'open'") > 0
    assert _one(url, "SELECT count(*) FROM deliverable WHERE status = 'revision_requested'") > 0
    assert (
        _one(
            url,
            "SELECT count(*) FROM task t WHERE status = 'delivered' AND NOT EXISTS (SELECT 1 FROM deliverable d"
            " WHERE d.task_id = t.id AND d.status = 'submitted')",
        )
        == 0
    )


def test_the_ledger_audit_passes(seeded):
    url, _, summary = seeded
    report = run_committed(url, audit.run_audit)
    assert report.violations == dict.fromkeys(report.violations, 0)
    assert report.ok
    assert report.entries == summary.rows["entry"]


def test_the_same_seed_gives_the_same_rows(seeded):
    url_a, url_b, _ = seeded
    assert _one(url_a, _TASKS_DIGEST) == _one(url_b, _TASKS_DIGEST)
    assert _one(url_a, _ENTRIES_DIGEST) == _one(url_b, _ENTRIES_DIGEST)

    # And in Python, without a database: another seed gives other tasks.
    def first_chunk(seed: int) -> dict[str, list[tuple]]:
        dataset = Dataset(Config(tasks=50, seed=seed, operators=3))
        dataset.grant_transfers_and_entries()
        return next(dataset.task_chunks())

    assert first_chunk(7) == first_chunk(7)
    assert first_chunk(7)["task"] != first_chunk(8)["task"]


def test_full_text_search_finds_tasks(seeded):
    url, _, _ = seeded
    assert _one(url, "SELECT count(*) FROM task WHERE search = ''::tsvector") == 0
    broad = _one(url, "SELECT count(*) FROM task WHERE search @@ to_tsquery('english', 'python')")
    narrow = _one(url, "SELECT count(*) FROM task WHERE search @@ to_tsquery('english', 'python & invoice')")
    assert 0 < narrow < broad < TASKS
    # The trigger is an ordinary one again: an edited title is re-indexed.
    assert _one(url, "SELECT tgenabled FROM pg_trigger WHERE tgname = 'task_search_insert'") == "O"


def test_derived_keys_are_stored(seeded):
    url, _, _ = seeded
    key = agent_key(5)
    assert is_well_formed(key, KeyKind.AGENT)
    digest = hashlib.sha256(key.encode()).hexdigest()
    row = _one(url, "SELECT agent_id, kind, prefix, revoked_at FROM api_key WHERE key_hash = %s", (digest,))
    assert row == (5, "agent", key[:14], None)
    assert is_well_formed(operator_key(3), KeyKind.OPERATOR)
    digest = hashlib.sha256(operator_key(3).encode()).hexdigest()
    assert _one(url, "SELECT operator_id FROM api_key WHERE key_hash = %s", (digest,)) == 3


def test_schema_is_intact_and_the_service_continues(seeded, database_url):
    url, _, _ = seeded
    with psycopg.connect(url) as seeded_db, psycopg.connect(database_url) as migrated_db:
        assert dict(seeded_db.execute(_INDEXES).fetchall()) == dict(migrated_db.execute(_INDEXES).fetchall())
    # Sequences continue after the seeded ids, and the ledger triggers are live again.
    created = run_committed(url, lambda uow: operators.create_operator(uow, name="After the seed"))
    assert created.operator.id == CONFIG.operators + 1
    assert created.credit_balance > 0
    assert run_committed(url, audit.run_audit).ok


def test_refuses_a_database_that_has_tasks(seeded):
    url, _, _ = seeded
    with pytest.raises(NotEmpty):
        seeding.seed(url, Config(tasks=10, operators=2), progress=False)
