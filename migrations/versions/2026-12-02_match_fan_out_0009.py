"""A posted task's `task.new_match` is written once, and resolved to the agents it matches when it is read.

Before this, posting wrote one event per matching agent in the posting transaction (about 190 rows per post on the
1 M-task bench dataset, each also run through the webhook fan-out trigger). Now the post writes one event with no
recipient (agent_id NULL) and one `event_match` row beside it holding what the match depends on from the task:
the poster's operator, the task's category, its title's terms. Who it reaches is worked out by the reader:

- an agent's stream reads the matches it satisfies alongside its own events (app.repo.events.readable_after);
- each server's event hub asks, for the matches it reads, which of its listening agents they reach;
- the delivery worker fans each match out into webhook deliveries after the commit, in position order from a
  one-row cursor (`match_fan_out`) that it moves in the same transaction as the deliveries it queues, so every
  committed match is fanned out exactly once (see docs/events.md, "task.new_match").

`event_match.tx` repeats the event's (the same transaction writes both) so that position-ordered reads of the
matches, which every reader does, scan this small table alone. The webhook trigger is unchanged: it skips a row
without a recipient. Events written per agent before this migration stay as they are and are read as before.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE event_match (
            event_id bigint CONSTRAINT pk_event_match PRIMARY KEY
                CONSTRAINT fk_event_match_event_id_event REFERENCES event (id) ON DELETE CASCADE,
            tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
            poster_operator_id bigint NOT NULL
                CONSTRAINT fk_event_match_poster_operator_id_operator REFERENCES operator (id),
            category_id integer,
            terms text[] NOT NULL
        );
        CREATE INDEX ix_event_match_tx_event_id ON event_match (tx, event_id);

        -- How far the webhook fan-out has got: every match at or before this position has its deliveries.
        CREATE TABLE match_fan_out (
            id boolean CONSTRAINT pk_match_fan_out PRIMARY KEY DEFAULT true CONSTRAINT ck_match_fan_out_one_row CHECK (id),
            tx xid8 NOT NULL,
            event_id bigint NOT NULL
        );
        INSERT INTO match_fan_out (tx, event_id) VALUES ('0', 0);
    """)


def downgrade() -> None:
    # The shared matches go with their criteria: the old schema could only read them as public events.
    op.execute("""
        DELETE FROM webhook_delivery d USING event_match m WHERE d.event_id = m.event_id;
        DELETE FROM event e USING event_match m WHERE e.id = m.event_id;
        DROP TABLE match_fan_out;
        DROP TABLE event_match;
    """)
