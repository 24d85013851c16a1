"""What the four other seed systems add to a task (DESIGN §5): the rows and constraints behind each option.

Migration 0002 left room on `task` for claim_mode, priority, tags, metadata, expires_at and callback_url; this one
adds the rest and backs each rule a second time, after the domain's checks:

- directed tasks: `eligible_agent_ids` (1-20 agents), read by every visibility check, with a GIN index for "the
  tasks directed at me";
- claim leases: `assignment_hours` (1-720) and the running assignment's `lease_expires_at`, which only a task
  being worked on before its first delivery can have (the lease sweeper reads its partial index);
- expiry: the sweeper reads open tasks by `expires_at` (a partial index of open tasks that expire);
- priority and tags: `priority_rank` (urgent 3 .. low 0, generated) orders the priority sort with the id as its
  keyset; tags are 0-10 lower-case words (`task_tags_valid`), with a GIN index for the all-of filter;
- metadata: a JSON object; its 64 KB limit is checked on its compact serialization by the domain, and here on
  jsonb's text form, which adds at most one space after each `:` and `,`, so at most doubles it;
- the conversation: `task_comment`, read by task in id order;
- the per-task callback: a `webhook` row owned by the poster agent with `task_id` set (one per task), so that
  signing, retries, the disable rule and the delivery log are the webhooks'. The fan-out trigger gives such an
  endpoint the events of its task addressed to the poster agent, and gives ordinary webhooks (`task_id` NULL)
  what they had.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE FUNCTION task_tags_valid(tags text[]) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT cardinality(tags) <= 10 AND coalesce(bool_and(tag ~ '^[a-z0-9-]{1,32}$'), true) FROM unnest(tags) tag
$$;

ALTER TABLE task
    ADD COLUMN eligible_agent_ids bigint[],
    ADD COLUMN assignment_hours integer,
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN priority_rank smallint NOT NULL GENERATED ALWAYS AS (
        CASE priority WHEN 'urgent' THEN 3 WHEN 'high' THEN 2 WHEN 'normal' THEN 1 ELSE 0 END) STORED,
    ADD CONSTRAINT ck_task_eligible_count
        CHECK (eligible_agent_ids IS NULL OR cardinality(eligible_agent_ids) BETWEEN 1 AND 20),
    ADD CONSTRAINT ck_task_assignment_hours_range CHECK (assignment_hours BETWEEN 1 AND 720),
    ADD CONSTRAINT ck_task_lease_while_working CHECK (
        lease_expires_at IS NULL OR (assignment_hours IS NOT NULL AND status IN ('claimed', 'in_progress'))),
    ADD CONSTRAINT ck_task_tags_valid CHECK (task_tags_valid(tags)),
    ADD CONSTRAINT ck_task_metadata_object CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object'),
    ADD CONSTRAINT ck_task_metadata_size CHECK (metadata IS NULL OR octet_length(metadata::text) <= 131072),
    ADD CONSTRAINT ck_task_callback_url_length CHECK (char_length(callback_url) BETWEEN 10 AND 2048);

CREATE INDEX ix_task_status_priority_rank_id ON task (status, priority_rank, id);
CREATE INDEX ix_task_tags ON task USING gin (tags);
CREATE INDEX ix_task_eligible_agent_ids ON task USING gin (eligible_agent_ids) WHERE eligible_agent_ids IS NOT NULL;
CREATE INDEX ix_task_expires_at ON task (expires_at) WHERE status = 'open' AND expires_at IS NOT NULL;
CREATE INDEX ix_task_lease_expires_at ON task (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE TABLE task_comment (
    id bigserial CONSTRAINT pk_task_comment PRIMARY KEY,
    task_id bigint NOT NULL CONSTRAINT fk_task_comment_task_id_task REFERENCES task (id),
    agent_id bigint NOT NULL CONSTRAINT fk_task_comment_agent_id_agent REFERENCES agent (id),
    content text NOT NULL CONSTRAINT ck_task_comment_content_length CHECK (char_length(content) BETWEEN 1 AND 5000),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_task_comment_task_id_id ON task_comment (task_id, id);

ALTER TABLE webhook ADD COLUMN task_id bigint CONSTRAINT fk_webhook_task_id_task REFERENCES task (id);
CREATE UNIQUE INDEX uq_webhook_task_id ON webhook (task_id) WHERE task_id IS NOT NULL;

CREATE OR REPLACE FUNCTION event_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_delivery (webhook_id, event_id, next_attempt_at)
    SELECT w.id, e.id, now()
      FROM written e
      JOIN webhook w ON w.agent_id = e.agent_id AND w.task_id IS NULL AND w.is_active AND e.type = ANY (w.events)
    UNION ALL
    SELECT w.id, e.id, now()
      FROM written e
      JOIN webhook w ON w.task_id = e.task_id AND w.agent_id = e.agent_id AND w.is_active AND e.type = ANY (w.events);
    RETURN NULL;
END $$;
"""

DOWNGRADE = """
CREATE OR REPLACE FUNCTION event_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_delivery (webhook_id, event_id, next_attempt_at)
    SELECT w.id, e.id, now()
      FROM written e
      JOIN webhook w ON w.agent_id = e.agent_id AND w.is_active AND e.type = ANY (w.events);
    RETURN NULL;
END $$;
DROP INDEX uq_webhook_task_id;
ALTER TABLE webhook DROP COLUMN task_id;
DROP TABLE task_comment;
DROP INDEX ix_task_lease_expires_at, ix_task_expires_at, ix_task_eligible_agent_ids, ix_task_tags,
           ix_task_status_priority_rank_id;
ALTER TABLE task
    DROP CONSTRAINT ck_task_callback_url_length,
    DROP CONSTRAINT ck_task_metadata_size,
    DROP CONSTRAINT ck_task_metadata_object,
    DROP CONSTRAINT ck_task_tags_valid,
    DROP CONSTRAINT ck_task_lease_while_working,
    DROP CONSTRAINT ck_task_assignment_hours_range,
    DROP CONSTRAINT ck_task_eligible_count,
    DROP COLUMN priority_rank,
    DROP COLUMN lease_expires_at,
    DROP COLUMN assignment_hours,
    DROP COLUMN eligible_agent_ids;
DROP FUNCTION task_tags_valid(text[]);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
