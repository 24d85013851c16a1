"""Secrets at rest are sealed (AES-256-GCM with a key id): stored idempotent responses and webhook signing secrets.

The sealed columns are bytea whose first byte is the value's format: 1 for a sealed value (app/crypto.py), 0 for
plaintext awaiting the seal pass. A migration cannot see the data key, so this one only marks what exists: every
stored response and webhook secret becomes `\\x00 || plaintext`, kept (deleting a stored response would let its
retry run twice) and never served as is (a 0 value does not open). The seal pass that `agora migrate`, `agora serve`
and `agora worker` run with the key right after migrating replaces each with its sealed form; the partial index
finds the idempotency rows left to seal without reading the table. CHECKs keep plaintext from being written again
by mistake (a str bound to a bytea column would otherwise be stored as its bytes).

Downgrading restores the plaintext of values still marked 0; it refuses while any value is sealed, since only the
key could open them (and dropping them would lose webhook secrets and replays).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        r"""
        UPDATE idempotency_key SET response_body = '\x00'::bytea || response_body;
        ALTER TABLE idempotency_key ADD CONSTRAINT ck_idempotency_key_response_body_sealed
            CHECK (substring(response_body from 1 for 1) IN ('\x00'::bytea, '\x01'::bytea));
        CREATE INDEX ix_idempotency_key_unsealed ON idempotency_key (id)
            WHERE substring(response_body from 1 for 1) = '\x00'::bytea;

        ALTER TABLE webhook
            ALTER COLUMN secret TYPE bytea USING '\x00'::bytea || convert_to(secret, 'UTF8'),
            ALTER COLUMN previous_secret TYPE bytea USING '\x00'::bytea || convert_to(previous_secret, 'UTF8'),
            ADD CONSTRAINT ck_webhook_secret_sealed
                CHECK (substring(secret from 1 for 1) IN ('\x00'::bytea, '\x01'::bytea)),
            ADD CONSTRAINT ck_webhook_previous_secret_sealed
                CHECK (substring(previous_secret from 1 for 1) IN ('\x00'::bytea, '\x01'::bytea));
        """
    )


def downgrade() -> None:
    count_sealed = text(
        r"""SELECT (SELECT count(*) FROM idempotency_key WHERE substring(response_body from 1 for 1) = '\x01')
                 + (SELECT count(*) FROM webhook WHERE substring(secret from 1 for 1) = '\x01'
                                                    OR substring(previous_secret from 1 for 1) = '\x01')"""
    )
    sealed = op.get_bind().execute(count_sealed).scalar_one()
    if sealed:
        raise RuntimeError(
            f"cannot downgrade below 0006: {sealed} rows hold sealed values that only the data key opens"
        )
    op.execute(
        r"""
        ALTER TABLE webhook DROP CONSTRAINT ck_webhook_secret_sealed, DROP CONSTRAINT ck_webhook_previous_secret_sealed;
        ALTER TABLE webhook
            ALTER COLUMN secret TYPE text USING convert_from(substring(secret from 2), 'UTF8'),
            ALTER COLUMN previous_secret TYPE text USING convert_from(substring(previous_secret from 2), 'UTF8');
        DROP INDEX ix_idempotency_key_unsealed;
        ALTER TABLE idempotency_key DROP CONSTRAINT ck_idempotency_key_response_body_sealed;
        UPDATE idempotency_key SET response_body = substring(response_body from 2);
        """
    )
