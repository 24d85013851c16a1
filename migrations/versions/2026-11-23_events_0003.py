"""Events and webhooks: the transactional outbox, webhook endpoints, deliveries and their attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
-- The outbox. One row per recipient: agent_id is the agent it is for; a row without one is the task's public
-- status, read by GET /tasks/{id}/events. `tx` is the writing transaction's id: readers take only rows whose
-- transaction is older than every transaction still running, ordered by (tx, id), so a row committed late can
-- never land behind a position a reader has already passed (no gap), and nothing is read twice.
CREATE TABLE event (
    id bigserial CONSTRAINT pk_event PRIMARY KEY,
    tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
    type text NOT NULL CONSTRAINT ck_event_type_length CHECK (char_length(type) BETWEEN 3 AND 64),
    agent_id bigint CONSTRAINT fk_event_agent_id_agent REFERENCES agent (id),
    task_id bigint CONSTRAINT fk_event_task_id_task REFERENCES task (id),
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_event_position ON event (tx, id);
CREATE INDEX ix_event_agent_position ON event (agent_id, tx, id) WHERE agent_id IS NOT NULL;
CREATE INDEX ix_event_task_position ON event (task_id, tx, id) WHERE agent_id IS NULL AND task_id IS NOT NULL;

CREATE FUNCTION event_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable' USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER event_no_update BEFORE UPDATE ON event FOR EACH ROW EXECUTE FUNCTION event_immutable();

CREATE TABLE webhook (
    id bigserial CONSTRAINT pk_webhook PRIMARY KEY,
    agent_id bigint NOT NULL CONSTRAINT fk_webhook_agent_id_agent REFERENCES agent (id),
    url text NOT NULL CONSTRAINT ck_webhook_url_length CHECK (char_length(url) BETWEEN 10 AND 2048),
    events text[] NOT NULL CONSTRAINT ck_webhook_events_count CHECK (cardinality(events) BETWEEN 1 AND 32),
    secret text NOT NULL,
    -- During a rotation's overlap deliveries are signed with both secrets.
    previous_secret text,
    previous_secret_expires_at timestamptz,
    is_active boolean NOT NULL DEFAULT true,
    disabled_reason text,
    disabled_at timestamptz,
    -- Consecutive failed attempts and when the streak began; a success resets both.
    failure_count integer NOT NULL DEFAULT 0,
    failing_since timestamptz,
    last_triggered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_webhook_previous_secret_pair
        CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL)),
    CONSTRAINT ck_webhook_disabled_pair CHECK (is_active = (disabled_at IS NULL))
);
CREATE INDEX ix_webhook_agent_id_id ON webhook (agent_id, id);

CREATE TABLE webhook_delivery (
    id bigserial CONSTRAINT pk_webhook_delivery PRIMARY KEY,
    webhook_id bigint NOT NULL CONSTRAINT fk_webhook_delivery_webhook_id_webhook
        REFERENCES webhook (id) ON DELETE CASCADE,
    event_id bigint NOT NULL CONSTRAINT fk_webhook_delivery_event_id_event REFERENCES event (id),
    status text NOT NULL DEFAULT 'pending'
        CONSTRAINT ck_webhook_delivery_status_known CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempt_count integer NOT NULL DEFAULT 0,
    -- attempt_count when the current retry schedule began (a redelivery starts a new one).
    retry_base integer NOT NULL DEFAULT 0,
    -- While pending: when the next attempt is due; while an attempt runs, when its lease ends (a worker that
    -- died mid-attempt is thereby retried).
    next_attempt_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    CONSTRAINT uq_webhook_delivery_webhook_id_event_id UNIQUE (webhook_id, event_id),
    CONSTRAINT ck_webhook_delivery_schedule CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
);
CREATE INDEX ix_webhook_delivery_due ON webhook_delivery (next_attempt_at) WHERE status = 'pending';
CREATE INDEX ix_webhook_delivery_webhook_id_id ON webhook_delivery (webhook_id, id);
CREATE INDEX ix_webhook_delivery_pending_webhook ON webhook_delivery (webhook_id) WHERE status = 'pending';
CREATE INDEX ix_webhook_delivery_event_id ON webhook_delivery (event_id);

CREATE TABLE webhook_attempt (
    id bigserial CONSTRAINT pk_webhook_attempt PRIMARY KEY,
    delivery_id bigint NOT NULL CONSTRAINT fk_webhook_attempt_delivery_id_webhook_delivery
        REFERENCES webhook_delivery (id) ON DELETE CASCADE,
    attempt_number integer NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    outcome text NOT NULL CONSTRAINT ck_webhook_attempt_outcome_known
        CHECK (outcome IN ('succeeded', 'failed', 'timeout', 'network_error', 'blocked')),
    response_status integer,
    response_snippet text,
    error text,
    next_attempt_at timestamptz
);
CREATE INDEX ix_webhook_attempt_delivery_id_id ON webhook_attempt (delivery_id, id);

-- Every event for an agent becomes one delivery per active webhook of that agent subscribed to its type, in the
-- statement that writes the event: no code path can write an event and forget its deliveries.
CREATE FUNCTION event_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_delivery (webhook_id, event_id, next_attempt_at)
    SELECT w.id, e.id, now()
      FROM written e
      JOIN webhook w ON w.agent_id = e.agent_id AND w.is_active AND e.type = ANY (w.events);
    RETURN NULL;
END $$;
CREATE TRIGGER event_fan_out AFTER INSERT ON event REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION event_fan_out();
"""


def upgrade() -> None:
    op.execute(TABLES)


def downgrade() -> None:
    op.execute("""
        DROP TABLE webhook_attempt;
        DROP TABLE webhook_delivery;
        DROP TABLE webhook;
        DROP TABLE event;
        DROP FUNCTION event_fan_out();
        DROP FUNCTION event_immutable();
    """)
