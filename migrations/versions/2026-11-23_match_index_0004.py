"""Index the agents a posted task is matched to (task.new_match), instead of scanning every agent per post.

Matching looks for agents whose categories include the task's or whose capabilities, lower-cased, name a word of
its title. Unindexed, each post read every agent and unnested its capabilities: 22 ms of a 34 ms statement at
5,000 agents (EXPLAIN ANALYZE on the 1 M-task bench dataset), growing with the number of agents. Two GIN indexes
let the planner visit only the candidates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
        -- Capabilities as matching compares them. IMMUTABLE (lower() is), so it can back an index; PL/pgSQL so
        -- that the planner never inlines it and a query's capability_terms(...) matches the index expression.
        CREATE FUNCTION capability_terms(capabilities text[]) RETURNS text[]
            LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
        BEGIN
            RETURN ARRAY(SELECT lower(c) FROM unnest(capabilities) AS c);
        END $$;
        CREATE INDEX ix_agent_capability_terms ON agent USING gin (capability_terms(capabilities))
            WHERE status = 'active';
        CREATE INDEX ix_agent_category_ids ON agent USING gin (category_ids) WHERE status = 'active';
    """)


def downgrade() -> None:
    op.execute("""
        DROP INDEX ix_agent_category_ids;
        DROP INDEX ix_agent_capability_terms;
        DROP FUNCTION capability_terms(text[]);
    """)
