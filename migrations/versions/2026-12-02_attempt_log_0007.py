"""Delivery attempts are recorded when they start, so an attempt a crash interrupted still shows in the log.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # filled in by the delivery-log change


def downgrade() -> None:
    pass
