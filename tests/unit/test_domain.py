"""Pure tests of the domain (ledger postings, keys, agent transitions) and of settings loading. No database."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import pytest

from app.config import Settings, SettingsError, load_settings
from domain import agents
from domain.agents import Agent, AgentStatus
from domain.errors import Conflict
from domain.keys import (
    DISPLAY_PREFIX_LENGTH,
    KEY_PREFIXES,
    KeyKind,
    generate_key,
    hash_key,
    is_well_formed,
    verification_code,
)
from domain.ledger import Posting, TransferKind, UnbalancedTransfer, balanced, move

# --- domain.ledger ------------------------------------------------------------------------------------------------


def test_balanced_sorts_postings_by_account_id():
    transfer = balanced(TransferKind.ADMIN_GRANT, "grant", [Posting(9, 5), Posting(3, -5)])
    assert transfer.postings == (Posting(3, -5), Posting(9, 5))
    assert transfer.kind is TransferKind.ADMIN_GRANT
    assert transfer.reason == "grant"


def test_balanced_merges_postings_of_one_account():
    transfer = balanced(
        TransferKind.ADMIN_GRANT, "merge", [Posting(2, 3), Posting(1, -10), Posting(2, 4), Posting(7, 3)]
    )
    assert transfer.postings == (Posting(1, -10), Posting(2, 7), Posting(7, 3))


def test_balanced_drops_accounts_that_net_to_zero():
    transfer = balanced(TransferKind.ADMIN_GRANT, "net", [Posting(1, -5), Posting(2, 5), Posting(3, 4), Posting(3, -4)])
    assert transfer.postings == (Posting(1, -5), Posting(2, 5))


def test_balanced_keeps_references():
    transfer = balanced(
        TransferKind.AGENT_BONUS, "bonus", [Posting(1, -1), Posting(2, 1)], operator_id=4, agent_id=5, task_id=None
    )
    assert (transfer.operator_id, transfer.agent_id, transfer.task_id) == (4, 5, None)


@pytest.mark.parametrize(
    "postings",
    [
        pytest.param([Posting(1, -10), Posting(2, 9)], id="unbalanced"),
        pytest.param([Posting(1, 10), Posting(2, 10)], id="same-sign"),
        pytest.param([Posting(1, 0)], id="single-zero-leg"),
        pytest.param([Posting(1, 5)], id="single-leg"),
        pytest.param([Posting(1, 5), Posting(1, -5)], id="one-account-nets-to-zero"),
        pytest.param([Posting(1, -5), Posting(2, 5), Posting(1, 5)], id="merged-to-one-leg"),
        pytest.param([], id="empty"),
    ],
)
def test_balanced_rejects_unbalanced_or_single_leg(postings):
    with pytest.raises(UnbalancedTransfer):
        balanced(TransferKind.ADMIN_GRANT, "bad", postings)


def test_unbalanced_transfer_is_a_value_error():
    assert issubclass(UnbalancedTransfer, ValueError)


def test_move_debits_source_and_credits_destination_in_account_order():
    transfer = move(TransferKind.ADMIN_DEBIT, "debit", source=8, destination=2, amount=30, operator_id=1)
    assert transfer.postings == (Posting(2, 30), Posting(8, -30))
    assert transfer.operator_id == 1
    assert sum(p.amount for p in transfer.postings) == 0


@pytest.mark.parametrize("amount", [0, -1, -100])
def test_move_rejects_non_positive_amounts(amount):
    with pytest.raises(UnbalancedTransfer, match="amount must be positive"):
        move(TransferKind.ADMIN_GRANT, "x", source=1, destination=2, amount=amount)


def test_move_to_the_same_account_is_rejected():
    with pytest.raises(UnbalancedTransfer):
        move(TransferKind.ADMIN_GRANT, "loop", source=1, destination=1, amount=5)


# --- domain.keys --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KeyKind))
def test_generated_key_format(kind):
    key = generate_key(kind)
    prefix = KEY_PREFIXES[kind]
    assert key.kind is kind
    assert re.fullmatch(re.escape(prefix) + "[0-9a-f]{64}", key.plaintext)
    assert len(key.display_prefix) == DISPLAY_PREFIX_LENGTH == 14
    assert key.display_prefix == key.plaintext[:14]
    assert key.display_prefix.startswith(prefix)
    assert key.key_hash == hashlib.sha256(key.plaintext.encode()).hexdigest() == hash_key(key.plaintext)
    assert re.fullmatch("[0-9a-f]{64}", key.key_hash)
    assert is_well_formed(key.plaintext, kind)


def test_key_prefixes_are_taskhives():
    assert KEY_PREFIXES == {KeyKind.AGENT: "th_agent_", KeyKind.OPERATOR: "th_op_", KeyKind.ADMIN: "th_admin_"}


def test_generated_keys_differ():
    keys = {generate_key(KeyKind.AGENT).plaintext for _ in range(50)}
    assert len(keys) == 50


def test_plaintext_is_not_in_the_hash():
    key = generate_key(KeyKind.OPERATOR)
    assert key.plaintext not in key.key_hash
    assert key.plaintext[len("th_op_") :] != key.key_hash


AGENT_SECRET = "0123456789abcdef" * 4  # 64 lower-case hex characters


@pytest.mark.parametrize(
    ("token", "kind", "expected"),
    [
        pytest.param("th_agent_" + AGENT_SECRET, KeyKind.AGENT, True, id="agent-73-chars"),
        pytest.param("th_op_" + AGENT_SECRET, KeyKind.OPERATOR, True, id="operator"),
        pytest.param("th_admin_" + AGENT_SECRET, KeyKind.ADMIN, True, id="admin"),
        pytest.param("th_op_" + AGENT_SECRET, KeyKind.AGENT, False, id="operator-key-as-agent"),
        pytest.param("th_agent_" + AGENT_SECRET, KeyKind.OPERATOR, False, id="agent-key-as-operator"),
        pytest.param("th_agent_" + AGENT_SECRET, KeyKind.ADMIN, False, id="agent-key-as-admin"),
        pytest.param("tx_agent_" + AGENT_SECRET, KeyKind.AGENT, False, id="wrong-prefix"),
        pytest.param("TH_AGENT_" + AGENT_SECRET, KeyKind.AGENT, False, id="upper-case-prefix"),
        pytest.param("th_agent_" + AGENT_SECRET[:-1], KeyKind.AGENT, False, id="72-chars"),
        pytest.param("th_agent_" + AGENT_SECRET + "a", KeyKind.AGENT, False, id="74-chars"),
        pytest.param("th_agent_" + AGENT_SECRET.upper(), KeyKind.AGENT, False, id="upper-case-hex"),
        pytest.param("th_agent_" + AGENT_SECRET[:-1] + "A", KeyKind.AGENT, False, id="one-upper-case-hex"),
        pytest.param("th_agent_" + AGENT_SECRET[:-1] + "g", KeyKind.AGENT, False, id="non-hex"),
        pytest.param("th_agent_" + AGENT_SECRET[:-1] + " ", KeyKind.AGENT, False, id="trailing-space"),
        pytest.param(" th_agent_" + AGENT_SECRET[:-1], KeyKind.AGENT, False, id="leading-space"),
        pytest.param("th_agent_" + "é" * 64, KeyKind.AGENT, False, id="non-ascii"),
        pytest.param("th_agent_", KeyKind.AGENT, False, id="prefix-only"),
        pytest.param("", KeyKind.AGENT, False, id="empty"),
    ],
)
def test_is_well_formed(token, kind, expected):
    assert is_well_formed(token, kind) is expected


def test_verification_code_shape():
    codes = [verification_code() for _ in range(50)]
    for code in codes:
        assert re.fullmatch("hive-[0-9A-F]{10}", code), code
    assert len(set(codes)) == 50


# --- domain.agents ------------------------------------------------------------------------------------------------


def make_agent(status: AgentStatus, *, operator_id: int | None = 1) -> Agent:
    return Agent(
        id=7,
        operator_id=operator_id,
        operator_name="Acme" if operator_id is not None else None,
        name="worker",
        description="Writes Python",
        capabilities=("python",),
        category_ids=(1,),
        hourly_rate_credits=None,
        status=status,
        reputation_score=50.0,
        tasks_completed=0,
        avg_rating=None,
        created_at=datetime(2026, 11, 23, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("transition", "status", "operator_id", "expected"),
    [
        (agents.pause, AgentStatus.ACTIVE, 1, AgentStatus.PAUSED),
        (agents.pause, AgentStatus.PAUSED, 1, AgentStatus.PAUSED),
        (agents.resume, AgentStatus.PAUSED, 1, AgentStatus.ACTIVE),
        (agents.resume, AgentStatus.ACTIVE, 1, AgentStatus.ACTIVE),
        (agents.suspend, AgentStatus.ACTIVE, 1, AgentStatus.SUSPENDED),
        (agents.suspend, AgentStatus.PAUSED, 1, AgentStatus.SUSPENDED),
        (agents.suspend, AgentStatus.SUSPENDED, 1, AgentStatus.SUSPENDED),
        (agents.suspend, AgentStatus.PENDING_CLAIM, None, AgentStatus.SUSPENDED),
        (agents.reactivate, AgentStatus.SUSPENDED, 1, AgentStatus.ACTIVE),
        (agents.reactivate, AgentStatus.SUSPENDED, None, AgentStatus.PENDING_CLAIM),
    ],
)
def test_allowed_transitions(transition, status, operator_id, expected):
    assert transition(make_agent(status, operator_id=operator_id)) is expected


@pytest.mark.parametrize(
    ("transition", "status", "operator_id", "action"),
    [
        (agents.pause, AgentStatus.SUSPENDED, 1, "paused"),
        (agents.pause, AgentStatus.PENDING_CLAIM, None, "paused"),
        (agents.resume, AgentStatus.SUSPENDED, 1, "resumed"),
        (agents.resume, AgentStatus.PENDING_CLAIM, None, "resumed"),
        (agents.reactivate, AgentStatus.ACTIVE, 1, "reactivated"),
        (agents.reactivate, AgentStatus.PAUSED, 1, "reactivated"),
        (agents.reactivate, AgentStatus.PENDING_CLAIM, None, "reactivated"),
    ],
)
def test_refused_transitions(transition, status, operator_id, action):
    with pytest.raises(Conflict) as info:
        transition(make_agent(status, operator_id=operator_id))
    assert info.value.code == "INVALID_STATUS"
    assert info.value.message == f"Agent 7 cannot be {action} while it is {status}"
    assert info.value.suggestion


def test_bonuses_are_taskhives():
    assert (agents.NEW_OPERATOR_BONUS, agents.NEW_AGENT_BONUS) == (500, 100)


# --- app.config ---------------------------------------------------------------------------------------------------


def test_defaults_without_any_variable():
    settings = load_settings({})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert (settings.db_pool_min, settings.db_pool_max) == (2, 10)
    assert settings.database_url == ""
    assert settings.rate_limit_per_minute == 100
    assert settings.log_level == "info"
    assert not hasattr(
        settings, "fault_point"
    )  # crash tests install their fault seam themselves (tests/fault_server.py)


def test_variables_are_read_and_converted():
    settings = load_settings(
        {
            "AGORA_PORT": "9001",
            "AGORA_DB_POOL_MIN": "3",
            "AGORA_DB_POOL_MAX": "4",
            "AGORA_LOG_LEVEL": "debug",
            "AGORA_DATABASE_URL": "postgresql://u@localhost/agora",
        }
    )
    assert (settings.port, settings.db_pool_min, settings.db_pool_max) == (9001, 3, 4)
    assert settings.log_level == "debug"
    assert settings.database_url == "postgresql://u@localhost/agora"


def test_unknown_and_foreign_variables_are_ignored():
    settings = load_settings({"AGORA_NOT_A_SETTING": "x", "AGORA_": "y", "PORT": "1", "HOME": "/root"})
    assert settings == Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGORA_PORT", "abc"),
        ("AGORA_PORT", "70000"),
        ("AGORA_PORT", "-1"),
        ("AGORA_WORKERS", "0"),
        ("AGORA_LOG_LEVEL", "verbose"),
        ("AGORA_DB_STATEMENT_TIMEOUT_MS", "10"),
    ],
)
def test_malformed_values_name_the_variable(name, value):
    with pytest.raises(SettingsError) as info:
        load_settings({name: value})
    assert name in str(info.value)


def test_port_abc_message():
    with pytest.raises(SettingsError, match="AGORA_PORT") as info:
        load_settings({"AGORA_PORT": "abc"})
    assert "$." not in str(info.value)  # the message names the variable, not msgspec's path


def test_pool_min_above_max_is_refused():
    with pytest.raises(SettingsError) as info:
        load_settings({"AGORA_DB_POOL_MIN": "5", "AGORA_DB_POOL_MAX": "2"})
    assert "AGORA_DB_POOL_MIN (5)" in str(info.value)
    assert "AGORA_DB_POOL_MAX (2)" in str(info.value)


def test_pool_min_equal_to_max_is_fine():
    assert load_settings({"AGORA_DB_POOL_MIN": "4", "AGORA_DB_POOL_MAX": "4"}).db_pool_min == 4


def test_pool_min_above_max_is_refused_when_built_directly():
    with pytest.raises(SettingsError):
        Settings(db_pool_min=11, db_pool_max=10)


def test_database_url_must_be_postgresql():
    with pytest.raises(SettingsError, match="AGORA_DATABASE_URL"):
        load_settings({"AGORA_DATABASE_URL": "mysql://localhost/agora"})


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)
