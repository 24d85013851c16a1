"""A task's comments: the lock and context posting one needs, the insert, and the page a participant reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import TupleRow

from app.repo import tasks as task_rows
from app.repo.connections import VIEWER_AGENT, Connection, Query, one_row
from app.repo.rows import Column, row_type
from app.repo.visibility import VISIBLE
from domain.comments import CommentRecord, Conversation, NewComment, Standing

COMMENT_RECORD = row_type(
    CommentRecord,
    id="c.id",
    task_id="c.task_id",
    agent_id="c.agent_id",
    agent_name="a.name",
    content="c.content",
    created_at="c.created_at",
)


@dataclass(frozen=True, slots=True)
class CommentContext:
    """What posting a comment needs besides the task (read with the task's lock held): every agent that has bid
    on it, and the new comment's id (drawn from its sequence), time (the transaction's, the column's default) and
    author's name, so that its record is known before the insert and the insert can go out with the commit."""

    bidder_agent_ids: tuple[int, ...]
    comment_id: int
    created_at: datetime
    agent_name: str


_COMMENT_CONTEXT = row_type(
    CommentContext,
    bidder_agent_ids=Column(
        """ARRAY(SELECT b.agent_id FROM claim b WHERE b.task_id = %(task)s
                  GROUP BY b.agent_id ORDER BY min(b.id))""",
        tuple,
    ),
    comment_id="nextval('task_comment_id_seq')",
    created_at="now()",
    agent_name="(SELECT name FROM agent WHERE id = %(agent)s)",
)


@dataclass(frozen=True, slots=True)
class CommentLock:
    conversation: Conversation
    context: CommentContext


async def lock_for_comment(connection: Connection, task_id: int, agent_id: int) -> CommentLock | None:
    """Lock the task, then read who has bid on it and the new comment's context, in one round trip. The bidders
    are read by a statement of their own, after the lock (see app.repo.tasks.lock_with_claim): a bid placed by the
    transaction the lock waited for is among them, and none can be placed until this one ends."""
    async with connection.pipeline():
        locked = await connection.execute(task_rows.LOCK_STATE, (task_id,))
        cursor = await connection.execute(f"SELECT {_COMMENT_CONTEXT.columns}", {"task": task_id, "agent": agent_id})
        context = _COMMENT_CONTEXT.read(await one_row(cursor), 0)  # its fetch sends both
        task = task_rows.read_state(await locked.fetchone())
    if task is None:
        return None
    return CommentLock(Conversation(task=task, bidder_agent_ids=context.bidder_agent_ids), context)


def new_record(comment: NewComment, context: CommentContext) -> CommentRecord:
    """The comment as `insert` writes it, as readers see it."""
    return CommentRecord(
        id=context.comment_id,
        task_id=comment.task_id,
        agent_id=comment.agent_id,
        agent_name=context.agent_name,
        content=comment.content,
        created_at=context.created_at,
    )


async def insert(connection: Connection, comment: NewComment, context: CommentContext) -> None:
    """Insert the comment with the id and time its context drew (nothing is read back)."""
    await connection.execute(
        "INSERT INTO task_comment (id, task_id, agent_id, content, created_at) VALUES (%s, %s, %s, %s, %s)",
        (context.comment_id, comment.task_id, comment.agent_id, comment.content, context.created_at),
    )


@dataclass(frozen=True, slots=True)
class CommentPage:
    """How the reader stands to the task's conversation, and a page of it (read whatever the standing: the
    domain decides whether the reader gets it)."""

    standing: Standing
    comments: list[CommentRecord]


_STANDING = row_type(
    Standing,
    poster_operator_id="s.poster_operator_id",
    worker_agent_id="s.claimed_by_agent_id",
    has_bid="s.has_bid",
)


def _page(rows: Sequence[TupleRow]) -> CommentPage | None:
    if not rows:
        return None
    at, read = _STANDING.width, COMMENT_RECORD.read
    return CommentPage(_STANDING.read(rows[0], 0), [read(row, at) for row in rows if row[at] is not None])


def page(task_id: int, *, after_id: int, limit: int) -> Query[CommentPage | None]:
    """The reader's standing and the task's comments after `after_id`, oldest first; None when the task does not
    exist or is a directed task the reader may not see (app.repo.visibility.VISIBLE). One statement, so the standing
    and the page are read from one snapshot."""
    # OFFSET 0 keeps the task's part a subquery of its own, so its EXISTS is evaluated once, not once a comment.
    # The page size is written into the statement (see app.repo.tasks.browse).
    return Query(
        lambda gate: (
            f"""
        SELECT {_STANDING.columns}, page.*
          FROM (SELECT t.id, t.poster_operator_id, t.claimed_by_agent_id,
                       EXISTS (SELECT 1 FROM claim b WHERE b.task_id = t.id AND b.agent_id = {VIEWER_AGENT}) AS has_bid
                  FROM task t
                 WHERE {gate} AND t.id = %(task)s AND {VISIBLE}
                OFFSET 0) s
          LEFT JOIN LATERAL (
                SELECT {COMMENT_RECORD.columns}
                  FROM task_comment c JOIN agent a ON a.id = c.agent_id
                 WHERE c.task_id = s.id AND c.id > %(after)s
                 ORDER BY c.id
                 LIMIT {int(limit)}
          ) page ON true
         ORDER BY page.id
        """
        ),
        {"task": task_id, "after": after_id},
        _page,
        viewed=True,
    )
