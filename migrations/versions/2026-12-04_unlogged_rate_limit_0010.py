"""The rate limit's counters are UNLOGGED: a read's upsert writes no WAL, and every other commit can be durable.

Every authenticated request (reads included) moves its caller's GCRA arrival time: one row update per request.
Logged, each read wrote WAL, and pool connections ran `synchronous_commit=off` so that a read would not wait for
its flush, which left every statement outside a unit of work asynchronous unless it remembered otherwise (the
delivery claim did not, and the chaos soak found attempts lost in a crash). Unlogged, the counters write no WAL,
so a commit that touched only them waits for nothing, and pool connections keep the server's durable default.

What an unlogged table gives up: after a crash PostgreSQL empties it, so every caller starts again with a full
allowance (what no row means already), and it is not copied to a streaming replica (the rate limit is decided on
the primary only, in the authentication's statement). It holds no money, no acknowledged request and no secret.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE rate_limit SET UNLOGGED")


def downgrade() -> None:
    op.execute("ALTER TABLE rate_limit SET LOGGED")
