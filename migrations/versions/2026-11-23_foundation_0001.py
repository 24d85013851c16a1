"""Foundation: operators, agents, API keys, categories, the ledger, idempotency keys and rate limits.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
CREATE TABLE operator (
    id bigserial CONSTRAINT pk_operator PRIMARY KEY,
    name text NOT NULL CONSTRAINT ck_operator_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agent (
    id bigserial CONSTRAINT pk_agent PRIMARY KEY,
    operator_id bigint CONSTRAINT fk_agent_operator_id_operator REFERENCES operator (id),
    name text NOT NULL,
    description text NOT NULL,
    capabilities text[] NOT NULL DEFAULT '{}',
    category_ids integer[] NOT NULL DEFAULT '{}',
    hourly_rate_credits integer,
    status text NOT NULL DEFAULT 'active',
    reputation_score double precision NOT NULL DEFAULT 50,
    tasks_completed integer NOT NULL DEFAULT 0,
    avg_rating double precision,
    verification_code text CONSTRAINT uq_agent_verification_code UNIQUE,
    claimed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_agent_status_known CHECK (status IN ('active','paused','suspended','pending_claim')),
    CONSTRAINT ck_agent_status_matches_operator CHECK (
        (status = 'pending_claim' AND operator_id IS NULL)
        OR (status IN ('active','paused') AND operator_id IS NOT NULL)
        OR status = 'suspended'),
    CONSTRAINT ck_agent_hourly_rate_non_negative CHECK (hourly_rate_credits IS NULL OR hourly_rate_credits >= 0),
    CONSTRAINT ck_agent_tasks_completed_non_negative CHECK (tasks_completed >= 0)
);
CREATE INDEX ix_agent_operator_id ON agent (operator_id);

CREATE TABLE api_key (
    id bigserial CONSTRAINT pk_api_key PRIMARY KEY,
    kind text NOT NULL,
    key_hash text NOT NULL CONSTRAINT uq_api_key_key_hash UNIQUE,
    prefix text NOT NULL,
    name text,
    agent_id bigint CONSTRAINT fk_api_key_agent_id_agent REFERENCES agent (id),
    operator_id bigint CONSTRAINT fk_api_key_operator_id_operator REFERENCES operator (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    last_used_at timestamptz,
    CONSTRAINT ck_api_key_kind_known CHECK (kind IN ('agent','operator','admin')),
    CONSTRAINT ck_api_key_hash_is_sha256_hex CHECK (char_length(key_hash) = 64),
    CONSTRAINT ck_api_key_prefix_length CHECK (char_length(prefix) = 14),
    CONSTRAINT ck_api_key_agent_key_has_agent CHECK ((kind = 'agent') = (agent_id IS NOT NULL)),
    CONSTRAINT ck_api_key_operator_key_has_operator CHECK ((kind = 'operator') = (operator_id IS NOT NULL))
);
CREATE UNIQUE INDEX uq_api_key_live_agent_key ON api_key (agent_id) WHERE revoked_at IS NULL;

CREATE TABLE category (
    id integer CONSTRAINT pk_category PRIMARY KEY,
    name text NOT NULL CONSTRAINT uq_category_name UNIQUE,
    slug text NOT NULL CONSTRAINT uq_category_slug UNIQUE,
    description text,
    icon text,
    sort_order integer NOT NULL DEFAULT 0
);

CREATE TABLE account (
    id bigserial CONSTRAINT pk_account PRIMARY KEY,
    kind text NOT NULL,
    operator_id bigint CONSTRAINT fk_account_operator_id_operator REFERENCES operator (id)
        CONSTRAINT uq_account_operator_id UNIQUE,
    task_id bigint CONSTRAINT uq_account_task_id UNIQUE,
    balance bigint NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_account_kind_known CHECK (
        kind IN ('operator_wallet','task_escrow','platform_revenue','platform_issuance')),
    CONSTRAINT ck_account_no_overdraft CHECK (kind = 'platform_issuance' OR balance >= 0),
    CONSTRAINT ck_account_wallet_has_operator CHECK ((kind = 'operator_wallet') = (operator_id IS NOT NULL)),
    CONSTRAINT ck_account_escrow_has_task CHECK ((kind = 'task_escrow') = (task_id IS NOT NULL))
);
CREATE UNIQUE INDEX uq_account_platform_kind ON account (kind)
    WHERE kind IN ('platform_revenue','platform_issuance');

CREATE TABLE transfer (
    id bigserial CONSTRAINT pk_transfer PRIMARY KEY,
    kind text NOT NULL,
    reason text NOT NULL,
    operator_id bigint CONSTRAINT fk_transfer_operator_id_operator REFERENCES operator (id),
    agent_id bigint CONSTRAINT fk_transfer_agent_id_agent REFERENCES agent (id),
    task_id bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_transfer_reason_length CHECK (char_length(reason) BETWEEN 1 AND 500)
);
CREATE INDEX ix_transfer_task_id ON transfer (task_id) WHERE task_id IS NOT NULL;

CREATE TABLE entry (
    id bigserial CONSTRAINT pk_entry PRIMARY KEY,
    transfer_id bigint NOT NULL CONSTRAINT fk_entry_transfer_id_transfer REFERENCES transfer (id),
    account_id bigint NOT NULL CONSTRAINT fk_entry_account_id_account REFERENCES account (id),
    amount bigint NOT NULL CONSTRAINT ck_entry_amount_non_zero CHECK (amount <> 0),
    balance_after bigint NOT NULL,
    account_version bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_entry_account_id_account_version UNIQUE (account_id, account_version)
);
CREATE INDEX ix_entry_transfer_id ON entry (transfer_id);

CREATE TABLE idempotency_key (
    id bigserial CONSTRAINT pk_idempotency_key PRIMARY KEY,
    principal text NOT NULL,
    key text NOT NULL CONSTRAINT ck_idempotency_key_key_length CHECK (char_length(key) BETWEEN 1 AND 255),
    fingerprint text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    response_status integer NOT NULL,
    response_body bytea NOT NULL,
    response_content_type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CONSTRAINT uq_idempotency_key_principal_key UNIQUE (principal, key)
);
CREATE INDEX ix_idempotency_key_expires_at ON idempotency_key (expires_at);

CREATE TABLE rate_limit (
    principal text CONSTRAINT pk_rate_limit PRIMARY KEY,
    tat timestamptz NOT NULL
);
"""

# The ledger's invariants, enforced by PostgreSQL itself (reliability.md §3.2).
LEDGER_RULES = """
-- An entry moves its account's cached balance: cached = derived holds by construction, and the no-overdraft
-- CHECK on account refuses any entry that would take a wallet or escrow below zero.
CREATE FUNCTION ledger_apply_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE account SET balance = balance + NEW.amount, version = version + 1
     WHERE id = NEW.account_id
    RETURNING balance, version INTO NEW.balance_after, NEW.account_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'account % does not exist', NEW.account_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER entry_apply BEFORE INSERT ON entry FOR EACH ROW EXECUTE FUNCTION ledger_apply_entry();

-- Balances change only through entries (the entry trigger runs at depth 1, its UPDATE's trigger at depth 2).
CREATE FUNCTION ledger_guard_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.balance, NEW.version) IS DISTINCT FROM (OLD.balance, OLD.version) AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'account % balance changes only through ledger entries', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER account_balance_guard BEFORE UPDATE ON account FOR EACH ROW EXECUTE FUNCTION ledger_guard_balance();

-- Every transfer has at least two entries and they sum to zero, checked at commit so that a transfer and its
-- entries can be written by separate statements.
CREATE FUNCTION ledger_assert_balanced(checked_transfer bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
    legs integer;
BEGIN
    SELECT coalesce(sum(amount), 0), count(*) INTO total, legs FROM entry WHERE transfer_id = checked_transfer;
    IF total <> 0 OR legs < 2 THEN
        RAISE EXCEPTION 'transfer % is unbalanced: % entries summing to %', checked_transfer, legs, total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transfer_balanced';
    END IF;
END $$;
CREATE FUNCTION ledger_check_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_balanced(NEW.transfer_id);
    RETURN NULL;
END $$;
CREATE FUNCTION ledger_check_transfer_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_balanced(NEW.id);
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER entry_balanced AFTER INSERT ON entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_entry_balanced();
CREATE CONSTRAINT TRIGGER transfer_balanced AFTER INSERT ON transfer
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_transfer_balanced();

-- Transfers and entries are append-only; corrections are new, reversing transfers.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER entry_append_only BEFORE UPDATE OR DELETE ON entry
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER entry_no_truncate BEFORE TRUNCATE ON entry
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER transfer_append_only BEFORE UPDATE OR DELETE ON transfer
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER transfer_no_truncate BEFORE TRUNCATE ON transfer
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
"""

SEED = """
INSERT INTO category (id, name, slug, description, icon, sort_order) VALUES
    (1, 'Coding', 'coding', 'Software development, scripts and automation', 'code', 1),
    (2, 'Writing', 'writing', 'Articles, documentation and copy', 'pen', 2),
    (3, 'Research', 'research', 'Investigation, analysis and reports', 'search', 3),
    (4, 'Data Processing', 'data-processing', 'Extraction, cleaning and transformation of data', 'database', 4),
    (5, 'Design', 'design', 'Visual and interface design', 'palette', 5),
    (6, 'Translation', 'translation', 'Translation and localisation', 'globe', 6),
    (7, 'General', 'general', 'Anything else', 'star', 7);
INSERT INTO account (kind) VALUES ('platform_issuance'), ('platform_revenue');
"""


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(LEDGER_RULES)
    op.execute(SEED)


def downgrade() -> None:
    op.execute(
        "DROP TABLE rate_limit, idempotency_key, entry, transfer, account, category, api_key, agent, operator CASCADE"
    )
    for function in (
        "ledger_apply_entry()",
        "ledger_guard_balance()",
        "ledger_check_entry_balanced()",
        "ledger_check_transfer_balanced()",
        "ledger_assert_balanced(bigint)",
        "ledger_append_only()",
    ):
        op.execute(f"DROP FUNCTION {function}")
