"""The schema's source of truth for Alembic. Request paths never use the ORM; see DESIGN §9.

Constraints, triggers and seed rows that SQLAlchemy cannot express are written by hand in the migrations.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.dialects.postgresql import base as postgresql_base
from sqlalchemy.types import UserDefinedType

from domain.ledger import REVENUE_SHARDS


class XID8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (the outbox orders events by their writer's)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


# So that reflection (the migrations test) knows the type instead of warning about it.
postgresql_base.ischema_names["xid8"] = XID8


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _created_at() -> Column[datetime]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


# A sealed column's first byte is its format: 1 sealed (app/crypto.py), 0 plaintext awaiting the seal pass.
_UNSEALED = "substring({column} from 1 for 1) = '\\x00'::bytea"


def _sealed_format(column: str) -> str:
    return f"substring({column} from 1 for 1) IN ('\\x00'::bytea, '\\x01'::bytea)"


operator = Table(
    "operator",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", Text, nullable=False),
    _created_at(),
    CheckConstraint("char_length(name) BETWEEN 1 AND 200", name="name_length"),
)

agent = Table(
    "agent",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("operator_id", BigInteger, ForeignKey("operator.id"), nullable=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("capabilities", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("category_ids", ARRAY(Integer), nullable=False, server_default=text("'{}'")),
    Column("hourly_rate_credits", Integer, nullable=True),
    Column("status", Text, nullable=False, server_default=text("'active'")),
    Column("reputation_score", Float, nullable=False, server_default=text("50")),
    Column("tasks_completed", Integer, nullable=False, server_default=text("0")),
    Column("avg_rating", Float, nullable=True),
    Column("verification_code", Text, nullable=True, unique=True),
    Column("claimed_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('active','paused','suspended','pending_claim')", name="status_known"),
    # Only an unclaimed agent lacks an operator; suspension may strike either.
    CheckConstraint(
        "(status = 'pending_claim' AND operator_id IS NULL) OR (status IN ('active','paused') AND operator_id IS NOT NULL)"
        " OR status = 'suspended'",
        name="status_matches_operator",
    ),
    CheckConstraint("hourly_rate_credits IS NULL OR hourly_rate_credits >= 0", name="hourly_rate_non_negative"),
    CheckConstraint("tasks_completed >= 0", name="tasks_completed_non_negative"),
    Index(None, "operator_id"),
)

api_key = Table(
    "api_key",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("prefix", Text, nullable=False),
    Column("name", Text, nullable=True),
    Column("agent_id", BigInteger, ForeignKey("agent.id"), nullable=True),
    Column("operator_id", BigInteger, ForeignKey("operator.id"), nullable=True),
    _created_at(),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("kind IN ('agent','operator','admin')", name="kind_known"),
    CheckConstraint("char_length(key_hash) = 64", name="hash_is_sha256_hex"),
    CheckConstraint("char_length(prefix) = 14", name="prefix_length"),
    CheckConstraint("(kind = 'agent') = (agent_id IS NOT NULL)", name="agent_key_has_agent"),
    CheckConstraint("(kind = 'operator') = (operator_id IS NOT NULL)", name="operator_key_has_operator"),
    # An agent holds one live key: rotation revokes the old one in the same transaction.
    Index("uq_api_key_live_agent_key", "agent_id", unique=True, postgresql_where=text("revoked_at IS NULL")),
)

category = Table(
    "category",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("slug", Text, nullable=False, unique=True),
    Column("description", Text, nullable=True),
    Column("icon", Text, nullable=True),
    Column("sort_order", Integer, nullable=False, server_default=text("0")),
)

account = Table(
    "account",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("operator_id", BigInteger, ForeignKey("operator.id"), nullable=True, unique=True),
    Column("task_id", BigInteger, ForeignKey("task.id"), nullable=True, unique=True),
    Column("balance", BigInteger, nullable=False, server_default=text("0")),
    Column("version", BigInteger, nullable=False, server_default=text("0")),
    _created_at(),
    # Platform revenue is REVENUE_SHARDS sub-accounts, numbered by shard (see the 0008 migration).
    Column("shard", SmallInteger, nullable=True),
    CheckConstraint(
        "kind IN ('operator_wallet','task_escrow','platform_revenue','platform_issuance')", name="kind_known"
    ),
    CheckConstraint("kind = 'platform_issuance' OR balance >= 0", name="no_overdraft"),
    CheckConstraint("(kind = 'operator_wallet') = (operator_id IS NOT NULL)", name="wallet_has_operator"),
    CheckConstraint("(kind = 'task_escrow') = (task_id IS NOT NULL)", name="escrow_has_task"),
    CheckConstraint("(kind = 'platform_revenue') = (shard IS NOT NULL)", name="revenue_has_shard"),
    CheckConstraint(f"shard BETWEEN 0 AND {REVENUE_SHARDS - 1}", name="shard_range"),
    # Platform issuance is a singleton, and each revenue shard exists once (NULLS NOT DISTINCT: issuance's shard
    # is NULL).
    Index(
        "uq_account_platform_kind_shard",
        "kind",
        "shard",
        unique=True,
        postgresql_nulls_not_distinct=True,
        postgresql_where=text("kind IN ('platform_revenue','platform_issuance')"),
    ),
)

transfer = Table(
    "transfer",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("operator_id", BigInteger, ForeignKey("operator.id"), nullable=True),
    Column("agent_id", BigInteger, ForeignKey("agent.id"), nullable=True),
    Column("task_id", BigInteger, ForeignKey("task.id"), nullable=True),
    _created_at(),
    CheckConstraint("char_length(reason) BETWEEN 1 AND 500", name="reason_length"),
    Index(None, "task_id", postgresql_where=text("task_id IS NOT NULL")),
)

entry = Table(
    "entry",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("transfer_id", BigInteger, ForeignKey("transfer.id"), nullable=False),
    Column("account_id", BigInteger, ForeignKey("account.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("account_version", BigInteger, nullable=False),
    _created_at(),
    CheckConstraint("amount <> 0", name="amount_non_zero"),
    # One entry per account version: the history of an account is a chain without gaps or forks.
    UniqueConstraint("account_id", "account_version"),
    Index(None, "transfer_id"),
)

idempotency_key = Table(
    "idempotency_key",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("principal", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("response_status", Integer, nullable=False),
    # Sealed to "idempotency_key:<principal>|<key>" (app/services/sealing.py); see the 0006 migration.
    Column("response_body", LargeBinary, nullable=False),
    Column("response_content_type", Text, nullable=False),
    _created_at(),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("char_length(key) BETWEEN 1 AND 255", name="key_length"),
    CheckConstraint(_sealed_format("response_body"), name="response_body_sealed"),
    UniqueConstraint("principal", "key"),
    Index(None, "expires_at"),
    Index("ix_idempotency_key_unsealed", "id", postgresql_where=text(_UNSEALED.format(column="response_body"))),
)

rate_limit = Table(
    "rate_limit",
    metadata,
    Column("principal", Text, primary_key=True),
    # GCRA's theoretical arrival time: one row and one timestamp per caller.
    Column("tat", DateTime(timezone=True), nullable=False),
    # Counting writes no WAL; a crash forgets it (every allowance whole again). Migration 0010 says why.
    prefixes=["UNLOGGED"],
)

task = Table(
    "task",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("poster_operator_id", BigInteger, ForeignKey("operator.id"), nullable=False),
    Column("poster_agent_id", BigInteger, ForeignKey("agent.id"), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("requirements", Text, nullable=True),
    Column("budget_credits", BigInteger, nullable=False),
    Column("category_id", Integer, ForeignKey("category.id"), nullable=True),
    Column("status", Text, nullable=False, server_default=text("'open'")),
    Column("claimed_by_agent_id", BigInteger, ForeignKey("agent.id"), nullable=True),
    Column("accepted_claim_id", BigInteger, ForeignKey("claim.id", use_alter=True), nullable=True),
    Column("price_credits", BigInteger, nullable=True),
    Column("assignment", Integer, nullable=False, server_default=text("0")),
    Column("deadline", DateTime(timezone=True), nullable=True),
    Column("max_revisions", Integer, nullable=False, server_default=text("2")),
    Column("claim_mode", Text, nullable=False, server_default=text("'bid'")),
    Column("priority", Text, nullable=False, server_default=text("'normal'")),
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("metadata", JSONB, nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("callback_url", Text, nullable=True),
    # Directed tasks, claim leases and the priority sort's key: see the 0011 migration.
    Column("eligible_agent_ids", ARRAY(BigInteger), nullable=True),
    Column("assignment_hours", Integer, nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column(
        "priority_rank",
        SmallInteger,
        Computed("CASE priority WHEN 'urgent' THEN 3 WHEN 'high' THEN 2 WHEN 'normal' THEN 1 ELSE 0 END"),
        nullable=False,
    ),
    Column("auto_review_enabled", Boolean, nullable=False, server_default=text("false")),
    # Kept by a trigger on the text columns only (see the 0002 migration): status updates never re-parse text.
    Column("search", TSVECTOR, nullable=False, server_default=text("''::tsvector")),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A task's conversation (GET/POST /tasks/{id}/comments).
task_comment = Table(
    "task_comment",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("task_id", BigInteger, ForeignKey("task.id"), nullable=False),
    Column("agent_id", BigInteger, ForeignKey("agent.id"), nullable=False),
    Column("content", Text, nullable=False),
    _created_at(),
)

claim = Table(
    "claim",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("task_id", BigInteger, ForeignKey("task.id"), nullable=False),
    Column("agent_id", BigInteger, ForeignKey("agent.id"), nullable=False),
    Column("operator_id", BigInteger, ForeignKey("operator.id"), nullable=False),
    Column("proposed_credits", BigInteger, nullable=False),
    Column("message", Text, nullable=True),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

deliverable = Table(
    "deliverable",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("task_id", BigInteger, ForeignKey("task.id"), nullable=False),
    Column("agent_id", BigInteger, ForeignKey("agent.id"), nullable=False),
    Column("assignment", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'submitted'")),
    Column("revision_notes", Text, nullable=True),
    Column("revision_number", Integer, nullable=False),
    Column("submitted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("task_id", "assignment", "revision_number"),
)

event = Table(
    "event",
    metadata,
    Column("id", BigInteger, primary_key=True),
    # See the 0003 migration: readers order by (tx, id) and read only transactions older than any still running.
    Column("tx", XID8, nullable=False, server_default=text("pg_current_xact_id()")),
    Column("type", Text, nullable=False),
    Column("agent_id", BigInteger, ForeignKey("agent.id"), nullable=True),
    Column("task_id", BigInteger, ForeignKey("task.id"), nullable=True),
    Column("data", JSONB, nullable=False),
    _created_at(),
)

# A task.new_match event's criteria (the event itself has no recipient): readers resolve who it reaches, see the
# 0009 migration. tx is the event's, so that position-ordered reads of matches scan this table alone.
event_match = Table(
    "event_match",
    metadata,
    Column("event_id", BigInteger, ForeignKey("event.id", ondelete="CASCADE"), primary_key=True),
    Column("tx", XID8, nullable=False, server_default=text("pg_current_xact_id()")),
    Column("poster_operator_id", BigInteger, ForeignKey("operator.id"), nullable=False),
    Column("category_id", Integer, nullable=True),
    Column("terms", ARRAY(Text), nullable=False),
    Index(None, "tx", "event_id"),
)

# One row: the position up to which the delivery worker has fanned matches out into webhook deliveries.
match_fan_out = Table(
    "match_fan_out",
    metadata,
    Column("id", Boolean, primary_key=True, server_default=text("true")),
    Column("tx", XID8, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    CheckConstraint("id", name="one_row"),
)

webhook = Table(
    "webhook",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("agent_id", BigInteger, ForeignKey("agent.id"), nullable=False),
    # Set on a task's callback endpoint (its poster's side of that task's events, 0011), NULL on an agent's webhook.
    Column("task_id", BigInteger, ForeignKey("task.id"), nullable=True),
    Column("url", Text, nullable=False),
    Column("events", ARRAY(Text), nullable=False),
    # Both sealed to "webhook:<id>": rotation moves the current secret into previous_secret as it is.
    Column("secret", LargeBinary, nullable=False),
    Column("previous_secret", LargeBinary, nullable=True),
    Column("previous_secret_expires_at", DateTime(timezone=True), nullable=True),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("disabled_reason", Text, nullable=True),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    Column("failure_count", Integer, nullable=False, server_default=text("0")),
    Column("failing_since", DateTime(timezone=True), nullable=True),
    Column("last_triggered_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    CheckConstraint(_sealed_format("secret"), name="secret_sealed"),
    CheckConstraint(_sealed_format("previous_secret"), name="previous_secret_sealed"),
)

webhook_delivery = Table(
    "webhook_delivery",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("webhook_id", BigInteger, ForeignKey("webhook.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", BigInteger, ForeignKey("event.id"), nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("attempt_count", Integer, nullable=False, server_default=text("0")),
    Column("retry_base", Integer, nullable=False, server_default=text("0")),
    # Due time while pending; the running attempt's lease end while one runs.
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("webhook_id", "event_id"),
)

_ATTEMPT_OUTCOMES = "'succeeded', 'failed', 'timeout', 'network_error', 'blocked'"
_UNFINISHED = "'in_progress', 'interrupted'"

webhook_attempt = Table(
    "webhook_attempt",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("delivery_id", BigInteger, ForeignKey("webhook_delivery.id", ondelete="CASCADE"), nullable=False),
    Column("attempt_number", Integer, nullable=False),
    # Written by the claim as in_progress, completed when the attempt ends (see the 0007 migration). started_at is
    # NULL only for attempts 0007 filled in; duration_ms is NULL exactly while no outcome is recorded.
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("outcome", Text, nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("response_snippet", Text, nullable=True),
    Column("error", Text, nullable=True),
    # When the next attempt is due; while in progress, when the claim ends (then it reads as interrupted).
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    CheckConstraint(f"outcome IN ({_ATTEMPT_OUTCOMES}, {_UNFINISHED})", name="outcome_known"),
    CheckConstraint(f"(duration_ms IS NULL) = (outcome IN ({_UNFINISHED}))", name="duration_when_ended"),
    CheckConstraint(f"started_at IS NOT NULL OR outcome IN ({_UNFINISHED})", name="started_when_ended"),
    UniqueConstraint("delivery_id", "attempt_number"),
)
