"""Task rows: creation with its escrow account, the locked state the rules need, and reader views."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from app.repo import claims, deliverables
from app.repo.connections import Connection, Query, Viewer, one_row, run
from app.repo.rows import Column, Field, Nested, row_type
from app.repo.task_clock import DUE, EXPIRY_DUE, SHOWN_STATUS, pending_bidders
from app.repo.visibility import POSTER_READS, VISIBLE
from domain.bids import BidderState, LockedBid
from domain.deliverables import DeliveryState
from domain.ledger import revenue_shard
from domain.tasks import (
    Category,
    ClaimMode,
    DeliverableStatus,
    NewTask,
    Priority,
    Sort,
    TaskFilter,
    TaskRecord,
    TaskState,
    TaskStatus,
)
from domain.transitions import Assignment, DeliverableFacts, LockedTask, TaskAccounts, TaskUpdate


@dataclass(frozen=True, slots=True)
class PostContext:
    """What posting a task needs, read before anything is written: the poster's wallet (its balance as of now, not
    locked: the hold's no-overdraft CHECK decides), its operator's name, the category asked for (None when none was
    or it does not exist), and the new task's and escrow account's ids (drawn from their sequences) and time (the
    transaction's, the columns' default), so that the task's record is known before its insert, and the insert
    can go out with the commit."""

    wallet_account_id: int
    wallet_balance: int
    poster_name: str
    category: Category | None
    task_id: int
    escrow_account_id: int
    created_at: datetime
    ineligible_agent_id: int | None  # the first of a directed task's agents that is not an active agent of another
    # operator (None: all are, or the task is not directed)
    callback_webhook_id: int | None  # the id its callback's webhook row will have (None: the task has no callback);
    # taken now because the callback's secret is sealed to it before the row is written


CATEGORY = row_type(Category, id="c.id", name="c.name", slug="c.slug")

_POST_CONTEXT = row_type(
    PostContext,
    wallet_account_id="w.id",
    wallet_balance="w.balance",
    poster_name="o.name",
    category=Nested(CATEGORY, optional=True),
    task_id="nextval('task_id_seq')",
    escrow_account_id="nextval('account_id_seq')",
    created_at="now()",
    ineligible_agent_id="""(SELECT x.id FROM unnest(%(eligible)s::bigint[]) WITH ORDINALITY x (id, n)
                             WHERE NOT EXISTS (SELECT 1 FROM agent a WHERE a.id = x.id AND a.status = 'active'
                                                  AND a.operator_id <> w.operator_id)
                             ORDER BY x.n LIMIT 1)""",
    callback_webhook_id="CASE WHEN %(callback)s THEN nextval(pg_get_serial_sequence('webhook', 'id')) END",
)


async def post_context(
    connection: Connection,
    operator_id: int,
    category_id: int | None,
    eligible_agent_ids: tuple[int, ...] | None,
    *,
    callback: bool = False,
) -> PostContext | None:
    """None when the operator has no wallet (every operator has one). The wallet's row is locked, so its balance
    stays the one read until the transaction ends: every change to a balance updates that row, and waits."""
    cursor = await connection.execute(
        f"""
        SELECT {_POST_CONTEXT.columns}
          FROM account w JOIN operator o ON o.id = w.operator_id
          LEFT JOIN category c ON c.id = %(category)s
         WHERE w.operator_id = %(operator)s AND w.kind = 'operator_wallet'
           FOR UPDATE OF w
        """,
        {
            "operator": operator_id,
            "category": category_id,
            "eligible": list(eligible_agent_ids) if eligible_agent_ids is not None else None,
            "callback": callback,
        },
    )
    row = await cursor.fetchone()
    return _POST_CONTEXT.read(row, 0) if row else None


def new_record(task: NewTask, context: PostContext, *, poster_operator_id: int) -> TaskRecord:
    """The task as `insert` writes it, as readers see it (an open task with no bids, deliveries or worker)."""
    return TaskRecord(
        id=context.task_id,
        title=task.title,
        description=task.description,
        requirements=task.requirements,
        budget_credits=task.budget_credits,
        category=context.category,
        status=TaskStatus.OPEN,
        poster_operator_id=poster_operator_id,
        poster_name=context.poster_name,
        claimed_by_agent_id=None,
        price_credits=None,
        claims_count=0,
        deliverables_count=0,
        deadline=task.deadline.astimezone(context.created_at.tzinfo) if task.deadline else None,
        max_revisions=task.max_revisions,
        auto_review_enabled=False,  # the column's default: nothing sets it yet
        created_at=context.created_at,
        claim_mode=task.claim_mode,
        priority=task.priority,
        tags=task.tags,
        expires_at=task.expires_at.astimezone(context.created_at.tzinfo) if task.expires_at else None,
        assignment_hours=task.assignment_hours,
        eligible_agent_ids=task.eligible_agent_ids,
        metadata=task.metadata,
        callback_url=task.callback_url,
    )


async def insert(
    connection: Connection, task: NewTask, context: PostContext, *, poster_operator_id: int, poster_agent_id: int
) -> None:
    """Insert the task and its escrow account, with the ids its context drew (nothing is read back)."""
    await connection.execute(
        """
        WITH created AS (
            INSERT INTO task (id, poster_operator_id, poster_agent_id, title, description, requirements,
                              budget_credits, category_id, deadline, max_revisions, claim_mode, priority, tags,
                              metadata, expires_at, callback_url, eligible_agent_ids, assignment_hours)
            VALUES (%(task)s, %(operator)s, %(agent)s, %(title)s, %(description)s, %(requirements)s, %(budget)s,
                    %(category)s, %(deadline)s, %(max_revisions)s, %(claim_mode)s, %(priority)s, %(tags)s,
                    %(metadata)s, %(expires_at)s, %(callback_url)s, %(eligible)s, %(assignment_hours)s)
            RETURNING id
        )
        INSERT INTO account (id, kind, task_id) SELECT %(escrow)s, 'task_escrow', id FROM created
        """,
        {
            "task": context.task_id,
            "escrow": context.escrow_account_id,
            "operator": poster_operator_id,
            "agent": poster_agent_id,
            "title": task.title,
            "description": task.description,
            "requirements": task.requirements,
            "budget": task.budget_credits,
            "category": task.category_id,
            "deadline": task.deadline,
            "max_revisions": task.max_revisions,
            "claim_mode": task.claim_mode.value,
            "priority": task.priority.value,
            "tags": list(task.tags),
            "metadata": Jsonb(task.metadata) if task.metadata is not None else None,
            "expires_at": task.expires_at,
            "callback_url": task.callback_url,
            "eligible": list(task.eligible_agent_ids) if task.eligible_agent_ids is not None else None,
            "assignment_hours": task.assignment_hours,
        },
    )


def _ids(ids: list[int] | None) -> tuple[int, ...] | None:
    return tuple(ids) if ids is not None else None


TASK_STATE = row_type(
    TaskState,
    id="t.id",
    poster_operator_id="t.poster_operator_id",
    status=Column("t.status", TaskStatus),
    budget_credits="t.budget_credits",
    claimed_by_agent_id="t.claimed_by_agent_id",
    price_credits="t.price_credits",
    max_revisions="t.max_revisions",
    assignment="t.assignment",
    title="t.title",
    deadline="t.deadline",
    poster_agent_id="t.poster_agent_id",
    claim_mode=Column("t.claim_mode", ClaimMode),
    eligible_agent_ids=Column("t.eligible_agent_ids", _ids),
    assignment_hours="t.assignment_hours",
    expires_at="t.expires_at",
    metadata="t.metadata",
    accepted_claim_id="t.accepted_claim_id",
    lease_expires_at="t.lease_expires_at",
    read_at="statement_timestamp()",
)
# The task's row lock with the state its rules decide on: the first statement of every change to one task.
_LOCK_STATE = f"SELECT {TASK_STATE.columns} FROM task t WHERE t.id = %s FOR UPDATE"


def _read_state(row: Sequence[Any] | None) -> TaskState | None:
    return TASK_STATE.read(row, 0) if row else None


# What accepting, revising or refunding a task needs besides its state: the deliverable named (d, an outer join)
# and the accounts its money moves between.
_LOCKED_FOR_REVIEW = row_type(
    LockedTask,
    task=Nested(TASK_STATE),
    deliverable=Nested(
        row_type(
            DeliverableFacts,
            id="d.id",
            task_id="d.task_id",
            status=Column("d.status", DeliverableStatus),
            revision_number="d.revision_number",
        ),
        optional=True,
    ),
    accounts=Nested(
        row_type(
            TaskAccounts,
            escrow="(SELECT e.id FROM account e WHERE e.task_id = t.id)",
            worker_wallet="""(SELECT w.id FROM agent a JOIN account w ON w.operator_id = a.operator_id
                               WHERE a.id = t.claimed_by_agent_id)""",
            poster_wallet="(SELECT p.id FROM account p WHERE p.operator_id = t.poster_operator_id)",
            # the task's revenue sub-account (domain.ledger.revenue_shard), not a shared row
            revenue="(SELECT r.id FROM account r WHERE r.kind = 'platform_revenue' AND r.shard = %(shard)s)",
        )
    ),
)


_LOCK_FOR_REVIEW = f"""
SELECT {_LOCKED_FOR_REVIEW.columns}
  FROM task t LEFT JOIN deliverable d ON d.id = %(deliverable)s
 WHERE t.id = %(task)s
   FOR UPDATE OF t
"""


def _review_params(task_id: int, deliverable_id: int | None) -> dict[str, Any]:
    return {"task": task_id, "deliverable": deliverable_id, "shard": revenue_shard(task_id)}


async def lock_for_review(connection: Connection, task_id: int, deliverable_id: int | None) -> LockedTask | None:
    """Lock the task and read, in the same statement, what accepting, revising or refunding it needs."""
    cursor = await connection.execute(_LOCK_FOR_REVIEW, _review_params(task_id, deliverable_id))
    row = await cursor.fetchone()
    return _LOCKED_FOR_REVIEW.read(row, 0) if row else None


@dataclass(frozen=True, slots=True)
class ClockLock:
    """What time passing on a task needs (domain.clock.lapse): the task locked with its accounts, and the agents of
    its pending bids."""

    locked: LockedTask
    bidders: tuple[int, ...]


async def lock_for_clock(connection: Connection, task_id: int) -> ClockLock | None:
    """Lock the task, then read its pending bidders, in one round trip (see lock_with_claim for why the second
    read is a statement of its own)."""
    async with connection.pipeline():
        cursor = await connection.execute(_LOCK_FOR_REVIEW, _review_params(task_id, None))
        bidders = await pending_bidders(connection, task_id)  # its fetch sends both
        row = await cursor.fetchone()
    return ClockLock(_LOCKED_FOR_REVIEW.read(row, 0), bidders) if row else None


async def lock_with_claim(connection: Connection, task_id: int, claim_id: int) -> LockedBid | None:
    """Lock the task, then read one of its bids, in one round trip (a pipeline).

    Two statements, not a join: a statement that waits for the task's lock sees the other rows it joins as they
    were before the wait (only the locked row is read again), so a bid withdrawn or accepted by the transaction it
    waited for would still read pending. The second statement takes its snapshot once the lock is held."""
    async with connection.pipeline():
        locked = await connection.execute(_LOCK_STATE, (task_id,))
        claim = await claims.find(connection, claim_id)  # its fetch sends both
        task = _read_state(await locked.fetchone())
    return LockedBid(task=task, claim=claim) if task else None


@dataclass(frozen=True, slots=True)
class BidLock:
    state: BidderState
    context: claims.BidContext


async def lock_for_bid(connection: Connection, task_id: int, agent_id: int) -> BidLock | None:
    """Lock the task, then read what placing the agent's bid needs (claims.bid_context), in one round trip (see
    lock_with_claim for why the read is a statement of its own)."""
    async with connection.pipeline():
        locked = await connection.execute(_LOCK_STATE, (task_id,))
        context = await claims.bid_context(connection, task_id, agent_id)  # its fetch sends both
        task = _read_state(await locked.fetchone())
    if task is None:
        return None
    return BidLock(BidderState(task=task, has_pending_bid=context.has_pending), context)


@dataclass(frozen=True, slots=True)
class DeliveryLock:
    state: DeliveryState
    context: deliverables.DeliveryContext


async def lock_for_delivery(connection: Connection, task_id: int, agent_id: int) -> DeliveryLock | None:
    """Lock the task, then read what the agent's delivery needs (deliverables.delivery_context), in one round trip
    (see lock_with_claim)."""
    async with connection.pipeline():
        locked = await connection.execute(_LOCK_STATE, (task_id,))
        context = await deliverables.delivery_context(connection, task_id, agent_id)  # its fetch sends both
        task = _read_state(await locked.fetchone())
    if task is None:
        return None
    state = DeliveryState(
        task=task, deliveries_this_assignment=context.deliveries_this_assignment, lease_ended_at=context.lease_ended_at
    )
    return DeliveryLock(state, context)


async def lock(connection: Connection, task_id: int) -> TaskState | None:
    """Lock the task row: every change to a task, its bids or its deliverables takes this lock first."""
    cursor = await connection.execute(_LOCK_STATE, (task_id,))
    return _read_state(await cursor.fetchone())


#: The row lock's statement and its reader, for a repository that pipelines its own read behind the lock
#: (app.repo.comments; see lock_with_claim for why that read is a statement of its own).
LOCK_STATE, read_state = _LOCK_STATE, _read_state


_RECORD_FIELDS: dict[str, Field] = dict(
    id="t.id",
    title="t.title",
    description="t.description",
    requirements="t.requirements",
    budget_credits="t.budget_credits",
    category=Nested(CATEGORY, optional=True),
    status=Column(SHOWN_STATUS, TaskStatus),
    poster_operator_id="t.poster_operator_id",
    poster_name="o.name",
    claimed_by_agent_id="t.claimed_by_agent_id",
    price_credits="t.price_credits",
    claims_count="(SELECT count(*) FROM claim cl WHERE cl.task_id = t.id)",
    deliverables_count="(SELECT count(*) FROM deliverable d WHERE d.task_id = t.id)",
    deadline="t.deadline",
    max_revisions="t.max_revisions",
    auto_review_enabled="t.auto_review_enabled",
    created_at="t.created_at",
    claim_mode=Column("t.claim_mode", ClaimMode),
    priority=Column("t.priority", Priority),
    tags=Column("t.tags", tuple),
    expires_at="t.expires_at",
    assignment_hours="t.assignment_hours",
    lease_expires_at="t.lease_expires_at",
    # The poster's fields, read for the poster's operator only.
    eligible_agent_ids=Column(f"CASE WHEN {POSTER_READS} THEN t.eligible_agent_ids END", _ids),
    metadata=f"CASE WHEN {POSTER_READS} THEN t.metadata END",
    callback_url=f"CASE WHEN {POSTER_READS} THEN t.callback_url END",
)
TASK_RECORD = row_type(TaskRecord, **_RECORD_FIELDS)
# What browse and an agent's task list show of a task (app.http.schemas.tasks): the detail's fields but the
# lease's and the poster's own, which keep their defaults (None), so that a page of the poster's tasks does not
# carry up to 64 KB of metadata a row only to drop it.
_DETAIL_ONLY = ("assignment_hours", "lease_expires_at", "eligible_agent_ids", "metadata", "callback_url")
_LISTED_FIELDS = {name: field for name, field in _RECORD_FIELDS.items() if name not in _DETAIL_ONLY}
LISTED_RECORD = row_type(TaskRecord, **_LISTED_FIELDS)
# A search hit: the record and its rank, by which the page is ordered (the alias "relevance").
_SEARCH_HIT = row_type(TaskRecord, **_RECORD_FIELDS, relevance="ts_rank(t.search, q.query)::float8")
_FROM = """
  FROM task t JOIN operator o ON o.id = t.poster_operator_id LEFT JOIN category c ON c.id = t.category_id
"""
_RECORD = f"SELECT {TASK_RECORD.columns}"
LISTED = f"SELECT {LISTED_RECORD.columns}"


def _one(rows: Sequence[TupleRow]) -> TaskRecord | None:
    return TASK_RECORD.read(rows[0], 0) if rows else None


def one(task_id: int) -> Query[TaskRecord | None]:
    """The task as its reader may see it: None for a directed task the reader is not among."""
    return Query(
        lambda gate: f"{_RECORD}{_FROM} WHERE {gate} AND t.id = %(task_id)s AND {VISIBLE}",
        {"task_id": task_id},
        _one,
        viewed=True,
    )


async def get(connection: Connection, task_id: int, viewer: Viewer | None) -> TaskRecord | None:
    return await run(connection, one(task_id), viewer)


def _one_and_due(rows: Sequence[TupleRow]) -> tuple[TaskRecord | None, bool]:
    if not rows:
        return None, False
    return TASK_RECORD.read(rows[0], 0), bool(rows[0][TASK_RECORD.width])


def one_on_the_clock(task_id: int) -> Query[tuple[TaskRecord | None, bool]]:
    """`one`, and whether time has passed one of the task's deadlines that no one has written yet (its expiry, its
    lease's end): the reader then writes it before it answers (app.services.task_clock.current)."""
    return Query(
        lambda gate: f'{_RECORD}, {DUE} AS "due"{_FROM} WHERE {gate} AND t.id = %(task_id)s AND {VISIBLE}',
        {"task_id": task_id},
        _one_and_due,
        viewed=True,
    )


def _filters(task_filter: TaskFilter) -> tuple[str, dict[str, Any]]:
    # The status is written into the statement (a TaskStatus value, a closed set of plain words), not bound: the
    # plan then knows it, and a search for open tasks can use the index of open tasks only (migration 0005).
    status = TaskStatus(task_filter.status).value
    shown = f"t.status = '{status}'"
    # An open task past its expiry is shown expired (SHOWN_STATUS), so it is listed with those, not the open ones.
    if status == TaskStatus.OPEN:
        shown = "t.status = 'open' AND (t.expires_at IS NULL OR t.expires_at > statement_timestamp())"
    elif status == TaskStatus.EXPIRED:
        shown = f"(t.status = 'expired' OR {EXPIRY_DUE})"
    clauses, params = [shown, VISIBLE], {}
    if task_filter.priority is not None:
        clauses.append(f"t.priority = '{Priority(task_filter.priority).value}'")
    if task_filter.tags:
        clauses.append("t.tags @> %(tags)s::text[]")  # all of them (the GIN index of migration 0011)
        params["tags"] = list(task_filter.tags)
    for column, operator, name in (
        ("category_id", "=", "category_id"),
        ("budget_credits", ">=", "min_budget"),
        ("budget_credits", "<=", "max_budget"),
    ):
        value = getattr(task_filter, name)
        if value is not None:
            clauses.append(f"t.{column} {operator} %({name})s")
            params[name] = value
    return " AND ".join(clauses), params


# Keyset pagination: each sort orders by a unique key (its value, then id), and the cursor is that key.
_ORDER = {
    Sort.NEWEST: ("t.id DESC", "t.id < %(id)s"),
    Sort.OLDEST: ("t.id ASC", "t.id > %(id)s"),
    Sort.BUDGET_HIGH: ("t.budget_credits DESC, t.id DESC", "(t.budget_credits, t.id) < (%(v)s, %(id)s)"),
    Sort.BUDGET_LOW: ("t.budget_credits ASC, t.id ASC", "(t.budget_credits, t.id) > (%(v)s, %(id)s)"),
    Sort.PRIORITY: ("t.priority_rank DESC, t.id DESC", "(t.priority_rank, t.id) < (%(v)s, %(id)s)"),
}


def browse(task_filter: TaskFilter, sort: Sort, after: dict[str, int] | None, limit: int) -> Query[list[TaskRecord]]:
    where, named = _filters(task_filter)
    order, seek = _ORDER[sort]
    if after is not None:
        where += " AND " + seek
        named.update(after)
    # The page size is written into the statement (an int the route bounds), not bound: with a bound LIMIT the
    # planner never trusts its generic plan for this statement and plans it again at every execution.
    return Query(
        lambda gate: f"{LISTED}{_FROM} WHERE {gate} AND {where} ORDER BY {order} LIMIT {int(limit)}",
        named,
        LISTED_RECORD.read_all,
        viewed=True,
    )


def _search_page(rows: Sequence[TupleRow]) -> tuple[bool, list[TaskRecord]]:
    usable = bool(rows and rows[0][0])
    return usable, [_SEARCH_HIT.read(row, 1) for row in rows if row[1] is not None]


def search(
    query: str, task_filter: TaskFilter, after: dict[str, Any] | None, limit: int
) -> Query[tuple[bool, list[TaskRecord]]]:
    """Ranked full-text search; reads as (the query had a usable term, the page). Keyset on (rank, id)."""
    where, named = _filters(task_filter)
    seek = ""
    if after is not None:
        seek = "AND (ts_rank(t.search, q.query)::float8, t.id) < (%(rank)s, %(id)s)"
        named.update(rank=after["rank"], id=after["id"])
    named.update(query=query, limit=limit)
    return Query(
        lambda gate: (
            f"""
        SELECT numnode(q.query) > 0, page.*
          FROM (SELECT to_tsquery('english', %(query)s) AS query) q LEFT JOIN LATERAL (
            SELECT {_SEARCH_HIT.columns}
            {_FROM}
            WHERE {gate} AND t.search @@ q.query AND {where} {seek}
            ORDER BY "relevance" DESC, t.id DESC
            LIMIT %(limit)s
        ) page ON true
        """
        ),
        named,
        _search_page,
        viewed=True,
    )


async def for_worker(
    connection: Connection, agent_id: int, viewer: Viewer | None, *, before_id: int | None, limit: int
) -> list[TaskRecord]:
    """The tasks an agent is working on (claimed, in progress or delivered), newest first."""
    query = Query(
        lambda gate: (
            f"""{LISTED}{_FROM}
        WHERE {gate} AND t.claimed_by_agent_id = %(agent)s AND t.status IN ('claimed','in_progress','delivered')
          AND (%(before)s::bigint IS NULL OR t.id < %(before)s)
        ORDER BY t.id DESC LIMIT %(limit)s"""
        ),
        {"agent": agent_id, "before": before_id, "limit": limit},
        LISTED_RECORD.read_all,
        viewed=True,
    )
    return await run(connection, query, viewer)


async def escrow_held(connection: Connection, operator_id: int) -> int:
    """Credits held in escrow for the operator's live tasks."""
    cursor = await connection.execute(
        "SELECT coalesce(sum(a.balance), 0) FROM task t JOIN account a ON a.task_id = t.id"
        " WHERE t.poster_operator_id = %s AND t.status IN ('open','claimed','in_progress','delivered')",
        (operator_id,),
    )
    (held,) = await one_row(cursor)
    return int(held)


async def complete_work(connection: Connection, task_id: int, worker_agent_id: int) -> None:
    """The task is completed and its worker's record counts it."""
    await connection.execute(
        "UPDATE agent SET tasks_completed = tasks_completed + 1, updated_at = statement_timestamp() WHERE id = %s",
        (worker_agent_id,),
    )
    await set_status(connection, task_id, TaskStatus.COMPLETED)


async def update(connection: Connection, change: TaskUpdate) -> None:
    """Write a task's change as the domain decided it (domain.transitions.TaskUpdate)."""
    await set_status(connection, change.task_id, change.status, assign=change.assign, unassign=change.unassign)


async def set_status(
    connection: Connection,
    task_id: int,
    status: TaskStatus,
    *,
    assign: Assignment | None = None,
    unassign: bool = False,
) -> None:
    """Write the task's new status; `assign` sets its worker, bid, price, assignment and lease, `unassign` clears the
    first three (the assignment number stays: it only grows). A lease runs from its assignment to the task's next
    change of status (its first delivery, a rollback, a cancel, the lease's end): every other change clears it."""
    if assign is not None and unassign:
        raise ValueError("a task is assigned a worker or unassigned, not both")
    params: dict[str, Any] = {"status": status.value, "id": task_id, "lease": None}
    worker = ""
    if assign is not None:
        worker = (
            ", claimed_by_agent_id = %(agent)s, accepted_claim_id = %(claim)s, price_credits = %(price)s,"
            " assignment = %(assignment)s"
        )
        params.update(
            agent=assign.agent_id,
            claim=assign.claim_id,
            price=assign.price_credits,
            assignment=assign.number,
            lease=assign.lease_expires_at,
        )
    elif unassign:
        worker = ", claimed_by_agent_id = NULL, accepted_claim_id = NULL, price_credits = NULL"
    await connection.execute(
        "UPDATE task SET status = %(status)s, lease_expires_at = %(lease)s, updated_at = statement_timestamp()"
        f"{worker} WHERE id = %(id)s",
        params,
    )
