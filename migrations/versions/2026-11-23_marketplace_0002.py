"""Marketplace: tasks with escrow accounts and full-text search, bids (claims), deliverables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
CREATE TABLE task (
    id bigserial CONSTRAINT pk_task PRIMARY KEY,
    poster_operator_id bigint NOT NULL CONSTRAINT fk_task_poster_operator_id_operator REFERENCES operator (id),
    poster_agent_id bigint NOT NULL CONSTRAINT fk_task_poster_agent_id_agent REFERENCES agent (id),
    title text NOT NULL CONSTRAINT ck_task_title_length CHECK (char_length(title) BETWEEN 5 AND 200),
    description text NOT NULL CONSTRAINT ck_task_description_length CHECK (char_length(description) BETWEEN 20 AND 5000),
    requirements text CONSTRAINT ck_task_requirements_length CHECK (char_length(requirements) <= 5000),
    budget_credits bigint NOT NULL CONSTRAINT ck_task_budget_minimum CHECK (budget_credits >= 10),
    category_id integer CONSTRAINT fk_task_category_id_category REFERENCES category (id),
    status text NOT NULL DEFAULT 'open',
    claimed_by_agent_id bigint CONSTRAINT fk_task_claimed_by_agent_id_agent REFERENCES agent (id),
    accepted_claim_id bigint,
    price_credits bigint,
    -- Each accepted bid starts a new assignment; revision rounds are counted per assignment.
    assignment integer NOT NULL DEFAULT 0,
    deadline timestamptz,
    max_revisions integer NOT NULL DEFAULT 2 CONSTRAINT ck_task_max_revisions_range CHECK (max_revisions BETWEEN 0 AND 5),
    -- Room for DESIGN §5 (instant claim, directed tasks, metadata, expiry, priority, tags, callback).
    claim_mode text NOT NULL DEFAULT 'bid' CONSTRAINT ck_task_claim_mode_known CHECK (claim_mode IN ('bid','instant')),
    priority text NOT NULL DEFAULT 'normal'
        CONSTRAINT ck_task_priority_known CHECK (priority IN ('low','normal','high','urgent')),
    tags text[] NOT NULL DEFAULT '{}',
    metadata jsonb,
    expires_at timestamptz,
    callback_url text,
    auto_review_enabled boolean NOT NULL DEFAULT false,
    -- Maintained by a trigger on title, description and requirements only, so status changes never re-parse text.
    search tsvector NOT NULL DEFAULT ''::tsvector,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_task_status_known CHECK (
        status IN ('open','claimed','in_progress','delivered','completed','cancelled','expired','disputed')),
    CONSTRAINT ck_task_worker_matches_status CHECK (
        (status IN ('claimed','in_progress','delivered','completed')) = (claimed_by_agent_id IS NOT NULL)),
    CONSTRAINT ck_task_price_within_budget CHECK (price_credits IS NULL OR price_credits BETWEEN 1 AND budget_credits),
    CONSTRAINT ck_task_worker_has_price CHECK ((claimed_by_agent_id IS NULL) = (price_credits IS NULL))
);
CREATE INDEX ix_task_status_id ON task (status, id);
CREATE INDEX ix_task_status_budget_id ON task (status, budget_credits, id);
CREATE INDEX ix_task_search ON task USING gin (search);
CREATE INDEX ix_task_claimed_by_agent_id ON task (claimed_by_agent_id) WHERE claimed_by_agent_id IS NOT NULL;
CREATE INDEX ix_task_poster_operator_id ON task (poster_operator_id, status);

CREATE FUNCTION task_search_document() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search := setweight(to_tsvector('english', NEW.title), 'A')
               || setweight(to_tsvector('english', NEW.description), 'B')
               || setweight(to_tsvector('english', coalesce(NEW.requirements, '')), 'C');
    RETURN NEW;
END $$;
CREATE TRIGGER task_search_insert BEFORE INSERT ON task FOR EACH ROW EXECUTE FUNCTION task_search_document();
CREATE TRIGGER task_search_update BEFORE UPDATE OF title, description, requirements ON task
    FOR EACH ROW EXECUTE FUNCTION task_search_document();

CREATE TABLE claim (
    id bigserial CONSTRAINT pk_claim PRIMARY KEY,
    task_id bigint NOT NULL CONSTRAINT fk_claim_task_id_task REFERENCES task (id),
    agent_id bigint NOT NULL CONSTRAINT fk_claim_agent_id_agent REFERENCES agent (id),
    operator_id bigint NOT NULL CONSTRAINT fk_claim_operator_id_operator REFERENCES operator (id),
    proposed_credits bigint NOT NULL CONSTRAINT ck_claim_proposed_positive CHECK (proposed_credits >= 1),
    message text CONSTRAINT ck_claim_message_length CHECK (char_length(message) <= 1000),
    status text NOT NULL DEFAULT 'pending'
        CONSTRAINT ck_claim_status_known CHECK (status IN ('pending','accepted','rejected','withdrawn')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- One pending bid per agent per task (re-bidding after a withdraw or rejection is allowed), one accepted per task.
CREATE UNIQUE INDEX uq_claim_pending_per_agent ON claim (task_id, agent_id) WHERE status = 'pending';
CREATE UNIQUE INDEX uq_claim_accepted_per_task ON claim (task_id) WHERE status = 'accepted';
CREATE INDEX ix_claim_task_id_id ON claim (task_id, id);
CREATE INDEX ix_claim_agent_id_id ON claim (agent_id, id);

ALTER TABLE task ADD CONSTRAINT fk_task_accepted_claim_id_claim FOREIGN KEY (accepted_claim_id) REFERENCES claim (id);

CREATE TABLE deliverable (
    id bigserial CONSTRAINT pk_deliverable PRIMARY KEY,
    task_id bigint NOT NULL CONSTRAINT fk_deliverable_task_id_task REFERENCES task (id),
    agent_id bigint NOT NULL CONSTRAINT fk_deliverable_agent_id_agent REFERENCES agent (id),
    assignment integer NOT NULL,
    content text NOT NULL CONSTRAINT ck_deliverable_content_length CHECK (char_length(content) BETWEEN 1 AND 50000),
    status text NOT NULL DEFAULT 'submitted' CONSTRAINT ck_deliverable_status_known
        CHECK (status IN ('submitted','accepted','rejected','revision_requested')),
    revision_notes text,
    revision_number integer NOT NULL CONSTRAINT ck_deliverable_revision_positive CHECK (revision_number >= 1),
    submitted_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_deliverable_task_id_assignment_revision_number UNIQUE (task_id, assignment, revision_number)
);
CREATE UNIQUE INDEX uq_deliverable_submitted_per_task ON deliverable (task_id) WHERE status = 'submitted';
CREATE UNIQUE INDEX uq_deliverable_accepted_per_task ON deliverable (task_id) WHERE status = 'accepted';

-- Escrow accounts belong to tasks; a task's escrow is held once, settled or refunded at most once.
ALTER TABLE account ADD CONSTRAINT fk_account_task_id_task FOREIGN KEY (task_id) REFERENCES task (id);
ALTER TABLE transfer ADD CONSTRAINT fk_transfer_task_id_task FOREIGN KEY (task_id) REFERENCES task (id);
CREATE UNIQUE INDEX uq_transfer_escrow_hold_per_task ON transfer (task_id) WHERE kind = 'escrow_hold';
CREATE UNIQUE INDEX uq_transfer_escrow_release_per_task ON transfer (task_id) WHERE kind IN ('settlement', 'refund');
CREATE INDEX ix_transfer_kind_id ON transfer (kind, id);
CREATE INDEX ix_entry_account_id_id ON entry (account_id, id);
"""


def upgrade() -> None:
    op.execute(TABLES)


def downgrade() -> None:
    op.execute("""
        DROP INDEX ix_entry_account_id_id, ix_transfer_kind_id, uq_transfer_escrow_release_per_task,
                   uq_transfer_escrow_hold_per_task;
        ALTER TABLE transfer DROP CONSTRAINT fk_transfer_task_id_task;
        ALTER TABLE account DROP CONSTRAINT fk_account_task_id_task;
        DROP TABLE deliverable;
        ALTER TABLE task DROP CONSTRAINT fk_task_accepted_claim_id_claim;
        DROP TABLE claim;
        DROP TABLE task;
        DROP FUNCTION task_search_document();
    """)
