"""Delivery attempts are recorded when they start, so an attempt a crash interrupted still shows in the log.

The worker's claim now writes each attempt as `in_progress` (its start time, and the claim's end as its
`next_attempt_at`) in the statement that claims the delivery; the outcome fills the row in when the attempt ends.
An attempt whose worker died, or whose outcome could not be written, is `interrupted` once its claim has run out:
the log reads it so, and the next claim of the delivery writes it so. Duration is unknown for both; `started_at` is
unknown only for the attempts this migration fills in.

Before this, an attempt was written only when it ended, so `attempt_count` (counted at the claim) could exceed the
attempts listed. Each missing attempt number is filled in here: `interrupted`, or `in_progress` until the claim ends
when it is the latest attempt of a delivery still claimed (its worker may yet answer; were it an older worker, its
insert of that number would then fail on the new unique constraint and the delivery be retried, so the log stays
whole either way).

Each attempt number appears once per delivery (the unique constraint replaces the plain (delivery_id, id) index:
the same prefix serves lookups by delivery, in the same order).

Downgrading deletes the attempts that have no outcome (the old schema cannot hold them).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = "'succeeded', 'failed', 'timeout', 'network_error', 'blocked'"
UNFINISHED = "'in_progress', 'interrupted'"


def upgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE webhook_attempt
            ALTER COLUMN started_at DROP NOT NULL,
            ALTER COLUMN duration_ms DROP NOT NULL,
            DROP CONSTRAINT ck_webhook_attempt_outcome_known,
            ADD CONSTRAINT ck_webhook_attempt_outcome_known CHECK (outcome IN ({OUTCOMES}, {UNFINISHED})),
            -- A duration exactly when the attempt ended with an outcome.
            ADD CONSTRAINT ck_webhook_attempt_duration_when_ended
                CHECK ((duration_ms IS NULL) = (outcome IN ({UNFINISHED}))),
            ADD CONSTRAINT ck_webhook_attempt_started_when_ended
                CHECK (started_at IS NOT NULL OR outcome IN ({UNFINISHED})),
            ADD CONSTRAINT uq_webhook_attempt_delivery_id_attempt_number UNIQUE (delivery_id, attempt_number);
        DROP INDEX ix_webhook_attempt_delivery_id_id;

        INSERT INTO webhook_attempt (delivery_id, attempt_number, started_at, duration_ms, outcome, next_attempt_at)
        SELECT d.id, n.number, NULL, NULL,
               CASE WHEN running THEN 'in_progress' ELSE 'interrupted' END, CASE WHEN running THEN d.next_attempt_at END
          FROM webhook_delivery d
         CROSS JOIN LATERAL generate_series(1, d.attempt_count) AS n (number)
         CROSS JOIN LATERAL (SELECT d.status = 'pending' AND n.number = d.attempt_count
                                    AND d.next_attempt_at > now() AS running) r
         WHERE d.attempt_count > (SELECT count(*) FROM webhook_attempt a WHERE a.delivery_id = d.id)
           AND NOT EXISTS (SELECT 1 FROM webhook_attempt a WHERE a.delivery_id = d.id AND a.attempt_number = n.number);
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        DELETE FROM webhook_attempt WHERE outcome IN ({UNFINISHED});
        CREATE INDEX ix_webhook_attempt_delivery_id_id ON webhook_attempt (delivery_id, id);
        ALTER TABLE webhook_attempt
            DROP CONSTRAINT uq_webhook_attempt_delivery_id_attempt_number,
            DROP CONSTRAINT ck_webhook_attempt_started_when_ended,
            DROP CONSTRAINT ck_webhook_attempt_duration_when_ended,
            DROP CONSTRAINT ck_webhook_attempt_outcome_known,
            ADD CONSTRAINT ck_webhook_attempt_outcome_known CHECK (outcome IN ({OUTCOMES})),
            ALTER COLUMN started_at SET NOT NULL,
            ALTER COLUMN duration_ms SET NOT NULL;
        """
    )
