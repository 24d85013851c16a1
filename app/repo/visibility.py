"""Who may see a task, as SQL on its row `t`: every read of tasks, or of what hangs off one, applies it.

A directed task (`eligible_agent_ids` set) exists for its eligible agents and its poster's operator only; to
anyone else it reads as no task at all. The reader is the statement's `viewer` (app.repo.connections).
"""

from __future__ import annotations

from app.repo.connections import VIEWER_AGENT, VIEWER_OPERATOR

#: The reader is the poster's operator (its agents count as itself): the poster's own fields are read for it only.
POSTER_READS = f"t.poster_operator_id = {VIEWER_OPERATOR}"
VISIBLE = f"(t.eligible_agent_ids IS NULL OR {POSTER_READS} OR {VIEWER_AGENT} = ANY (t.eligible_agent_ids))"
