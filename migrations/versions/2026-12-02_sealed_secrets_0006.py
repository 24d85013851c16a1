"""Secrets at rest are sealed (AES-256-GCM with a key id): stored idempotent responses and webhook signing secrets.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # filled in by the secrets-at-rest change


def downgrade() -> None:
    pass
