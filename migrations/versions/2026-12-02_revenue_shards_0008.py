"""Platform revenue is split over 16 sub-accounts, so that settlements of different tasks rarely lock the same row.

Every settlement credits its fee to platform revenue, and the entry trigger updates the credited account's cached
balance: with one revenue account, each settlement waited on that one row lock until the settlement before it had
committed (issue 12, item 7). A task's fee now goes to the sub-account `domain.ledger.revenue_shard(task_id)`
names; platform revenue is the sum of the sub-accounts.

The column `account.shard` numbers the sub-accounts 0-15: a platform revenue account has one, no other account
has one, and each number is taken once (with NULLS NOT DISTINCT, the same unique index keeps platform issuance a
singleton). The existing revenue account becomes shard 0 and keeps its balance and history; shards 1-15 are
created empty. The range is written out here rather than read from the domain so that this migration stays what it
was when it ran; changing the number of shards takes a migration of its own (the audit checks the count).

Downgrading works only while shards 1-15 have no entries (account.version = 0) and refuses otherwise: their
entries are append-only and reference them, so they could not be deleted even after a transfer had moved their
balance back to shard 0, and the old schema has room for one revenue account only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARDS = 16
PLATFORM_KINDS = "'platform_revenue','platform_issuance'"


def upgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE account ADD COLUMN shard smallint;
        UPDATE account SET shard = 0 WHERE kind = 'platform_revenue';
        ALTER TABLE account
            ADD CONSTRAINT ck_account_revenue_has_shard CHECK ((kind = 'platform_revenue') = (shard IS NOT NULL)),
            ADD CONSTRAINT ck_account_shard_range CHECK (shard BETWEEN 0 AND {SHARDS - 1});
        DROP INDEX uq_account_platform_kind;
        CREATE UNIQUE INDEX uq_account_platform_kind_shard ON account (kind, shard) NULLS NOT DISTINCT
            WHERE kind IN ({PLATFORM_KINDS});
        INSERT INTO account (kind, shard)
        SELECT 'platform_revenue', s.shard
          FROM generate_series(0, {SHARDS - 1}) AS s (shard)
         WHERE NOT EXISTS (SELECT 1 FROM account a WHERE a.kind = 'platform_revenue' AND a.shard = s.shard)
         ORDER BY s.shard;
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM account WHERE kind = 'platform_revenue' AND shard <> 0 AND version <> 0) THEN
                RAISE EXCEPTION 'revenue shards 1-{SHARDS - 1} have entries: the one-account schema cannot hold them'
                    USING ERRCODE = 'object_in_use';
            END IF;
        END $$;
        DELETE FROM account WHERE kind = 'platform_revenue' AND shard <> 0;
        DROP INDEX uq_account_platform_kind_shard;
        CREATE UNIQUE INDEX uq_account_platform_kind ON account (kind) WHERE kind IN ({PLATFORM_KINDS});
        ALTER TABLE account
            DROP CONSTRAINT ck_account_shard_range,
            DROP CONSTRAINT ck_account_revenue_has_shard,
            DROP COLUMN shard;
        """
    )
