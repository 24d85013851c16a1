"""LED-1: a model-based test of the whole marketplace through the HTTP API (reliability.md §3.3 and §5.2).

A Hypothesis `RuleBasedStateMachine` drives the in-process API against the real test database: operators and agents,
admin grants and debits, posting tasks (budgets that may exceed the wallet; in bid or instant mode, some with an
expiry, some with a claim lease), bids (prices that may exceed the budget) and instant claims, withdrawals, accepting
a bid, deliveries, revisions, accepting a deliverable, cancel, rollback, reads, and negative rules (another operator
acting on the poster's task, bidding on one's own operator's task). Time passes too (issue 13): a rule moves a task's
expiry or its lease's end into the past on the database, and the model predicts what the next request touching the
task writes first (the lease's end, then the expiry), as does a rule running the sweeper. A plain Python model
predicts every response's status and error code, each wallet, the platform's revenue, each task's escrow and status.
After every step the ledger audit (GET /api/v1/admin/ledger/audit, L1-L12) must report no violation, and every
wallet, every task's escrow and status and the platform's revenue must equal the model.

How the async app is driven from a synchronous state machine: the test owns one private event loop
(`asyncio.new_event_loop()`) for its whole run. The psycopg connection, the app (`create_app` over a
`SharedConnectionSource` of that connection) and the `AsyncTestClient` are all created on that loop, and every request
is `loop.run_until_complete(...)`. Only one loop ever touches the connection, so there is no cross-loop use (the
sync `TestClient` runs the app on its own portal thread and loop, which the connection would have to be opened on).
Each test case (Hypothesis example) runs on a database of its own (from the suite's pool of migrated clones, taken in
`__init__`, given back in `teardown`): requests commit as in production, and examples see nothing of each other.

Size: AGORA_LED_EXAMPLES (default 300) examples of AGORA_LED_STEPS (default 60) steps; see the note by `SETTINGS`.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from litestar.testing import AsyncTestClient

from app.main import create_app
from app.repo.connections import ConnectionLease, SharedConnectionSource
from app.services import admin, task_clock
from app.services.uow import UnitOfWork
from tests.conftest import TEST_SETTINGS, bearer
from tests.database_pool import TestDatabases

EXAMPLES = int(os.environ.get("AGORA_LED_EXAMPLES", "300"))
STEPS = int(os.environ.get("AGORA_LED_STEPS", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)

OPERATOR_BONUS, AGENT_BONUS, FEE_PERCENT = 500, 100, 10
MAX_OPERATORS, MAX_AGENTS = 4, 8
LIVE = ("open", "claimed", "in_progress", "delivered")  # the statuses whose budget is still in escrow
DESCRIPTION = "A task of the model-based test; twenty characters at least."
FAR_AHEAD = "2099-01-01T00:00:00Z"  # an expiry, until a rule moves it into the past


# The model -------------------------------------------------------------------------------------------------------


@dataclass
class Agent:
    id: int
    key: str
    operator_id: int


@dataclass
class Claim:
    id: int
    task_id: int
    agent_id: int
    price: int
    status: str = "pending"


@dataclass
class Deliverable:
    id: int
    task_id: int
    revision_number: int
    status: str = "submitted"


@dataclass
class Task:
    id: int
    poster_operator_id: int
    budget: int
    max_revisions: int
    status: str = "open"
    worker: int | None = None  # the assigned agent (kept after completion, cleared by cancel and rollback)
    price: int | None = None
    assignment: int = 0
    deliveries: dict[int, int] = field(default_factory=dict)  # assignment -> deliveries so far
    instant: bool = False
    expires: bool = False  # posted with an expires_at (far ahead, until `time_passes_the_expiry`)
    expiry_passed: bool = False
    assignment_hours: int | None = None
    leased: bool = False  # the running assignment has a lease (from its start to its first delivery)
    lease_passed: bool = False
    lapsed_worker: int | None = None  # whose lease ended the latest assignment (until the next one starts)

    @property
    def escrow(self) -> int:
        return self.budget if self.status in LIVE else 0


# Error codes the model predicts.
FORBIDDEN, NOT_OPEN, INVALID_STATUS = "FORBIDDEN", "TASK_NOT_OPEN", "INVALID_STATUS"


class Harness:
    """One private event loop and one in-process app for the whole test run; a database and a connection to it for
    each example."""

    def __init__(self, databases: TestDatabases) -> None:
        self.databases = databases
        self.loop = asyncio.new_event_loop()
        self.database: str | None = None
        self.conn = self._open()  # the first example's, which the app starts with
        self.fresh = True
        self.app = create_app(TEST_SETTINGS, source=SharedConnectionSource(self.conn))
        self.client = AsyncTestClient(app=self.app)
        self.run(self.client.__aenter__())

    def run(self, awaitable):
        return self.loop.run_until_complete(awaitable)

    def _open(self) -> psycopg.AsyncConnection:
        self.database = self.databases.take()
        return self.run(psycopg.AsyncConnection.connect(self.database, autocommit=True))

    def begin_example(self) -> psycopg.AsyncConnection:
        if not self.fresh:
            self.conn = self._open()
            self.app.state.source = SharedConnectionSource(self.conn)
        self.fresh = False
        return self.conn

    def end_example(self) -> None:
        if not self.conn.closed:
            self.run(self.conn.close())
        if self.database is not None:
            self.databases.give_back(self.database)
        self.database = None

    def close(self) -> None:
        try:
            self.end_example()
            self.run(self.client.__aexit__(None, None, None))
        finally:
            self.loop.close()


class MarketplaceMachine(RuleBasedStateMachine):
    harness: Harness  # set by the test before the run

    def __init__(self) -> None:
        super().__init__()
        self.h = self.harness
        self.conn = self.h.begin_example()
        uow = UnitOfWork(ConnectionLease(SharedConnectionSource(self.conn)))
        self.admin_key = self.h.run(admin.create_admin_key(uow, name="model"))
        self.wallets: dict[int, int] = {}
        self.operator_keys: dict[int, str] = {}
        self.agents: list[Agent] = []
        self.tasks: list[Task] = []
        self.claims: list[Claim] = []
        self.deliverables: list[Deliverable] = []
        self.fees = 0
        self.revenue_at_start = self.scalar("SELECT sum(balance) FROM account WHERE kind = 'platform_revenue'")
        self.counter = 0

    def teardown(self) -> None:
        self.h.end_example()

    # Plumbing ----------------------------------------------------------------------------------------------------

    def scalar(self, sql: str, params: tuple = ()) -> int:
        async def fetch():
            return await (await self.conn.execute(sql, params)).fetchone()

        return self.h.run(fetch())[0]

    def call(self, method: str, path: str, key: str, body: dict | None, status: int, code: str | None = None) -> dict:
        """Send the request and check the status (and error code) the model predicted; returns the data."""
        request = getattr(self.h.client, method)
        kwargs = {"headers": bearer(key)}
        if method == "post":
            kwargs["json"] = body
        response = self.h.run(request(f"/api/v1{path}", **kwargs))
        assert response.status_code == status, f"{method.upper()} {path}: expected {status}, got {response.text}"
        payload = response.json()
        if status >= 400:
            assert payload["error"]["code"] == code, f"{path}: expected {code}, got {payload['error']}"
            return payload["error"]
        return payload["data"]

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix} {self.counter}"

    def pick(self, data, preferred: list, anything: list, label: str):
        """Mostly one of `preferred` (the moves that can succeed), sometimes anything (mostly refusals)."""
        if preferred and data.draw(st.integers(0, 4), label=f"{label} preferred") > 0:
            return data.draw(st.sampled_from(preferred), label=label)
        return data.draw(st.sampled_from(anything), label=label)

    def agent(self, agent_id: int) -> Agent:
        return next(a for a in self.agents if a.id == agent_id)

    def task(self, task_id: int) -> Task:
        return next(t for t in self.tasks if t.id == task_id)

    def poster_key(self, task: Task) -> str:
        return next(a.key for a in self.agents if a.operator_id == task.poster_operator_id)

    def strangers(self, task: Task) -> list[Agent]:
        return [a for a in self.agents if a.operator_id != task.poster_operator_id]

    def assign(self, task: Task, claim: Claim) -> None:
        for other in self.claims:
            if other.task_id == task.id and other.status == "pending":
                other.status = "rejected"
        claim.status = "accepted"
        task.status, task.worker, task.price = "claimed", claim.agent_id, claim.price
        task.assignment += 1
        task.leased, task.lease_passed, task.lapsed_worker = task.assignment_hours is not None, False, None

    def unlease(self, task: Task) -> None:
        task.leased = task.lease_passed = False

    def touch(self, task: Task) -> bool:
        """What the system writes first when a request (or the sweeper) touches the task: a lease that ran out ends
        (a rollback's effects), then an open task past its expiry expires (a cancel's). True when anything did."""
        changed = False
        if task.lease_passed and task.status in ("claimed", "in_progress"):
            for claim in self.claims:
                if claim.task_id == task.id and claim.status == "accepted":
                    claim.status = "rejected"
            task.lapsed_worker = task.worker
            task.status, task.worker, task.price = "open", None, None
            self.unlease(task)
            changed = True
        if task.expiry_passed and task.status == "open":
            for claim in self.claims:
                if claim.task_id == task.id and claim.status == "pending":
                    claim.status = "rejected"
            self.wallets[task.poster_operator_id] += task.budget
            task.status = "expired"
            changed = True
        return changed

    def add_agent(self, operator_id: int) -> None:
        created = self.call(
            "post",
            "/operator/agents",
            self.operator_keys[operator_id],
            {"name": self.name("agent"), "description": "a modelled agent"},
            201,
        )
        self.agents.append(Agent(created["id"], created["api_key"], operator_id))
        self.wallets[operator_id] += AGENT_BONUS

    # Operators and credits ---------------------------------------------------------------------------------------

    @initialize()
    def two_operators(self) -> None:
        """Every case starts with two operators of one agent each, so there is always someone to bid."""
        self.new_operator_with_agent()
        self.new_operator_with_agent()

    @precondition(lambda self: len(self.operator_keys) < MAX_OPERATORS)
    @rule()
    def new_operator_with_agent(self) -> None:
        created = self.call("post", "/admin/operators", self.admin_key, {"name": self.name("operator")}, 201)
        assert created["credit_balance"] == OPERATOR_BONUS
        self.operator_keys[created["id"]] = created["api_key"]
        self.wallets[created["id"]] = OPERATOR_BONUS
        self.add_agent(created["id"])

    @precondition(lambda self: self.operator_keys and len(self.agents) < MAX_AGENTS)
    @rule(data=st.data())
    def new_agent(self, data) -> None:
        self.add_agent(data.draw(st.sampled_from(sorted(self.operator_keys)), label="operator"))

    @precondition(lambda self: self.operator_keys)
    @rule(data=st.data(), amount=st.integers(-700, 500).filter(bool))
    def admin_grant_or_debit(self, data, amount: int) -> None:
        operator_id = data.draw(st.sampled_from(sorted(self.operator_keys)), label="operator")
        body = {"amount": amount, "reason": "model"}
        path = f"/admin/operators/{operator_id}/credits"
        if self.wallets[operator_id] + amount < 0:
            self.call("post", path, self.admin_key, body, 422, "INSUFFICIENT_CREDITS")
            return
        posted = self.call("post", path, self.admin_key, body, 201)
        self.wallets[operator_id] += amount
        assert posted["balance_after"] == self.wallets[operator_id]

    # Tasks and bids ----------------------------------------------------------------------------------------------

    @precondition(lambda self: self.agents)
    @rule(
        data=st.data(),
        budget=st.integers(10, 300),
        max_revisions=st.integers(0, 2),
        instant=st.booleans(),
        expires=st.booleans(),
        assignment_hours=st.one_of(st.none(), st.integers(1, 720)),
    )
    def post_task(
        self, data, budget: int, max_revisions: int, instant: bool, expires: bool, assignment_hours: int | None
    ) -> None:
        poster = data.draw(st.sampled_from(self.agents), label="poster")
        body = {
            "title": self.name("Task"),
            "description": DESCRIPTION,
            "budget_credits": budget,
            "max_revisions": max_revisions,
            "claim_mode": "instant" if instant else "bid",
            **({"expires_at": FAR_AHEAD} if expires else {}),
            **({"assignment_hours": assignment_hours} if assignment_hours is not None else {}),
        }
        if budget > self.wallets[poster.operator_id]:
            self.call("post", "/tasks", poster.key, body, 422, "INSUFFICIENT_CREDITS")
            return
        created = self.call("post", "/tasks", poster.key, body, 201)
        self.wallets[poster.operator_id] -= budget
        task = Task(created["id"], poster.operator_id, budget, max_revisions, instant=instant, expires=expires)
        task.assignment_hours = assignment_hours
        self.tasks.append(task)

    def predict_bid(self, task: Task, bidder: Agent, price: int | None) -> tuple[int, str | None]:
        if price is None and not task.instant:
            return 422, "VALIDATION_ERROR"
        if task.poster_operator_id == bidder.operator_id:
            return 409, "SELF_CLAIM"
        if task.status != "open":
            return 409, NOT_OPEN
        if task.instant and price not in (None, task.budget):
            return 422, "INVALID_CREDITS"
        if price is not None and not 1 <= price <= task.budget:
            return 422, "INVALID_CREDITS"
        if any(c.task_id == task.id and c.agent_id == bidder.id and c.status == "pending" for c in self.claims):
            return 409, "DUPLICATE_CLAIM"
        return 201, None

    def place_bid(self, task: Task, bidder: Agent, price: int | None) -> None:
        self.touch(task)
        status, code = self.predict_bid(task, bidder, price)
        path = f"/tasks/{task.id}/claims"
        body = {"proposed_credits": price} if price is not None else {}
        created = self.call("post", path, bidder.key, body, status, code)
        if status != 201:
            return
        if task.instant:  # taken at its budget, at once
            assert (created["status"], created["proposed_credits"]) == ("accepted", task.budget)
            claim = Claim(created["id"], task.id, bidder.id, task.budget)
            self.claims.append(claim)
            self.assign(task, claim)
        else:
            self.claims.append(Claim(created["id"], task.id, bidder.id, price or 0))

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def bid(self, data) -> None:
        task = self.pick(data, [t for t in self.tasks if t.status == "open"], self.tasks, "task")
        bidder = self.pick(data, self.strangers(task), self.agents, "bidder")
        prices = st.integers(1, task.budget + 5)
        if task.instant:  # mostly the claim as it is meant (no price), sometimes the budget or another price
            prices = st.one_of(st.none(), st.none(), st.just(task.budget), prices)
        elif data.draw(st.integers(0, 9), label="forget the price") == 0:
            prices = st.none()
        self.place_bid(task, bidder, data.draw(prices, label="price"))

    def takeable(self) -> list[Task]:
        return [t for t in self.tasks if t.instant and t.status == "open" and self.strangers(t)]

    @precondition(lambda self: self.takeable())
    @rule(data=st.data())
    def take_instant_task(self, data) -> None:
        """The instant claim as it is meant: an agent of another operator, no price."""
        task = data.draw(st.sampled_from(self.takeable()), label="task")
        self.place_bid(task, data.draw(st.sampled_from(self.strangers(task)), label="taker"), None)

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def self_bid(self, data) -> None:
        """Negative: an agent of the poster's own operator bids."""
        task = data.draw(st.sampled_from(self.tasks), label="task")
        own = [a for a in self.agents if a.operator_id == task.poster_operator_id]
        bidder = data.draw(st.sampled_from(own), label="bidder")
        self.place_bid(task, bidder, None if task.instant else data.draw(st.integers(1, task.budget), label="price"))

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def withdraw(self, data) -> None:
        claim = self.pick(data, [c for c in self.claims if c.status == "pending"], self.claims, "claim")
        actor = self.pick(data, [self.agent(claim.agent_id)], self.agents, "actor")
        path = f"/tasks/{claim.task_id}/claims/{claim.id}/withdraw"
        task = self.task(claim.task_id)
        self.touch(task)
        if actor.id != claim.agent_id:
            self.call("post", path, actor.key, None, 403, FORBIDDEN)
        elif task.instant or claim.status != "pending":
            self.call("post", path, actor.key, None, 409, INVALID_STATUS)
        else:
            self.call("post", path, actor.key, None, 200)
            claim.status = "withdrawn"

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def accept_bid(self, data) -> None:
        open_ids = {t.id for t in self.tasks if t.status == "open"}
        pending = [c for c in self.claims if c.status == "pending" and c.task_id in open_ids]
        claim = self.pick(data, pending, self.claims, "claim")
        task = self.task(claim.task_id)
        path = f"/tasks/{task.id}/claims/{claim.id}/accept"
        key = self.poster_key(task)
        self.touch(task)
        if task.instant:  # its claims were accepted as they were made
            self.call("post", path, key, None, 409, INVALID_STATUS)
        elif task.status != "open":
            self.call("post", path, key, None, 409, NOT_OPEN)
        elif claim.status != "pending":
            self.call("post", path, key, None, 409, INVALID_STATUS)
        else:
            accepted = self.call("post", path, key, None, 200)
            assert accepted["agent_id"] == claim.agent_id
            self.assign(task, claim)

    # Work --------------------------------------------------------------------------------------------------------

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def deliver(self, data) -> None:
        working = [t for t in self.tasks if t.status in ("claimed", "in_progress")]
        task = self.pick(data, working, self.tasks, "task")
        actor = self.pick(data, [self.agent(task.worker)] if task.worker is not None else [], self.agents, "actor")
        path = f"/tasks/{task.id}/deliverables"
        body = {"content": "the work"}
        self.touch(task)
        so_far = task.deliveries.get(task.assignment, 0)
        if actor.id != task.worker and actor.id == task.lapsed_worker:
            self.call("post", path, actor.key, body, 409, INVALID_STATUS)  # its lease ended
        elif actor.id != task.worker:
            self.call("post", path, actor.key, body, 403, "NOT_CLAIMED_BY_YOU")
        elif task.status not in ("claimed", "in_progress"):
            self.call("post", path, actor.key, body, 409, INVALID_STATUS)
        elif so_far + 1 > task.max_revisions + 1:
            self.call("post", path, actor.key, body, 409, "MAX_REVISIONS")
        else:
            created = self.call("post", path, actor.key, body, 201)
            assert created["revision_number"] == so_far + 1
            task.deliveries[task.assignment] = so_far + 1
            task.status = "delivered"
            self.unlease(task)  # the first delivery ends the lease
            self.deliverables.append(Deliverable(created["id"], task.id, so_far + 1))

    def reviewable(self) -> list[Deliverable]:
        delivered = {t.id for t in self.tasks if t.status == "delivered"}
        return [d for d in self.deliverables if d.status == "submitted" and d.task_id in delivered]

    def predict_review(self, task: Task, deliverable: Deliverable) -> tuple[int, str | None]:
        if task.status != "delivered":
            return 409, INVALID_STATUS
        if deliverable.status != "submitted":
            return 409, INVALID_STATUS
        return 200, None

    @precondition(lambda self: self.deliverables)
    @rule(data=st.data())
    def request_revision(self, data) -> None:
        deliverable = self.pick(data, self.reviewable(), self.deliverables, "deliverable")
        task = self.task(deliverable.task_id)
        self.touch(task)
        status, code = self.predict_review(task, deliverable)
        if status == 200 and deliverable.revision_number >= task.max_revisions + 1:
            status, code = 409, "MAX_REVISIONS"
        path = f"/tasks/{task.id}/deliverables/{deliverable.id}/revision"
        self.call("post", path, self.poster_key(task), {"revision_notes": "again"}, status, code)
        if status == 200:
            deliverable.status, task.status = "revision_requested", "in_progress"

    @precondition(lambda self: self.deliverables)
    @rule(data=st.data())
    def accept_deliverable(self, data) -> None:
        deliverable = self.pick(data, self.reviewable(), self.deliverables, "deliverable")
        task = self.task(deliverable.task_id)
        self.touch(task)
        status, code = self.predict_review(task, deliverable)
        path = f"/tasks/{task.id}/deliverables/{deliverable.id}/accept"
        self.call("post", path, self.poster_key(task), None, status, code)
        if status == 200:
            assert task.price is not None and task.worker is not None
            fee = task.price * FEE_PERCENT // 100
            self.wallets[self.agent(task.worker).operator_id] += task.price - fee
            self.wallets[task.poster_operator_id] += task.budget - task.price
            self.fees += fee
            deliverable.status, task.status = "accepted", "completed"

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def cancel(self, data) -> None:
        task = self.pick(data, [t for t in self.tasks if t.status in ("open", "claimed")], self.tasks, "task")
        path = f"/tasks/{task.id}/cancel"
        self.touch(task)
        if task.status not in ("open", "claimed"):
            self.call("post", path, self.poster_key(task), None, 409, INVALID_STATUS)
            return
        self.call("post", path, self.poster_key(task), None, 200)
        for claim in self.claims:
            if claim.task_id == task.id and claim.status in ("pending", "accepted"):
                claim.status = "rejected"
        self.wallets[task.poster_operator_id] += task.budget
        task.status, task.worker, task.price = "cancelled", None, None
        self.unlease(task)

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def rollback(self, data) -> None:
        working = [t for t in self.tasks if t.status in ("claimed", "in_progress")]
        task = self.pick(data, working, self.tasks, "task")
        path = f"/tasks/{task.id}/rollback"
        self.touch(task)
        if task.status not in ("claimed", "in_progress"):
            self.call("post", path, self.poster_key(task), None, 409, INVALID_STATUS)
            return
        self.call("post", path, self.poster_key(task), None, 200)
        for claim in self.claims:
            if claim.task_id == task.id and claim.status == "accepted":
                claim.status = "rejected"
        task.status, task.worker, task.price = "open", None, None
        self.unlease(task)

    @precondition(lambda self: any(self.strangers(t) for t in self.tasks))
    @rule(data=st.data(), action=st.sampled_from(["cancel", "rollback", "accept_bid", "revision", "accept"]))
    def act_on_someone_elses_task(self, data, action: str) -> None:
        """Negative: an agent of another operator plays the poster. Always 403, whatever the task's state."""
        task = data.draw(st.sampled_from([t for t in self.tasks if self.strangers(t)]), label="task")
        stranger = data.draw(st.sampled_from(self.strangers(task)), label="stranger")
        claim_id = next((c.id for c in self.claims if c.task_id == task.id), 1)
        deliverable_id = next((d.id for d in self.deliverables if d.task_id == task.id), 1)
        path, body = {
            "cancel": (f"/tasks/{task.id}/cancel", None),
            "rollback": (f"/tasks/{task.id}/rollback", None),
            "accept_bid": (f"/tasks/{task.id}/claims/{claim_id}/accept", None),
            "revision": (f"/tasks/{task.id}/deliverables/{deliverable_id}/revision", {"revision_notes": "mine"}),
            "accept": (f"/tasks/{task.id}/deliverables/{deliverable_id}/accept", None),
        }[action]
        self.touch(task)  # what time made due is written before the refusal, and stays
        self.call("post", path, stranger.key, body, 403, FORBIDDEN)

    # Time --------------------------------------------------------------------------------------------------------

    def deadline_passes(self, task: Task, column: str) -> None:
        async def move():
            await self.conn.execute(
                f"UPDATE task SET {column} = statement_timestamp() - interval '1 second' WHERE id = %s", (task.id,)
            )

        self.h.run(move())

    @precondition(lambda self: any(t.expires and not t.expiry_passed for t in self.tasks))
    @rule(data=st.data())
    def time_passes_the_expiry(self, data) -> None:
        """Whatever the task's status: an expiry passed while it is assigned takes effect if it reopens."""
        task = data.draw(st.sampled_from([t for t in self.tasks if t.expires and not t.expiry_passed]), label="task")
        self.deadline_passes(task, "expires_at")
        task.expiry_passed = True

    @precondition(lambda self: any(t.leased and not t.lease_passed for t in self.tasks))
    @rule(data=st.data())
    def time_passes_the_lease(self, data) -> None:
        task = data.draw(st.sampled_from([t for t in self.tasks if t.leased and not t.lease_passed]), label="task")
        self.deadline_passes(task, "lease_expires_at")
        task.lease_passed = True

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def read_task(self, data) -> None:
        task = data.draw(st.sampled_from(self.tasks), label="task")
        self.touch(task)
        shown = self.call("get", f"/tasks/{task.id}", self.poster_key(task), None, 200)
        assert (shown["status"], shown["claimed_by_agent_id"]) == (task.status, task.worker), shown
        assert (shown["lease_expires_at"] is not None) == task.leased, shown

    @precondition(lambda self: self.tasks)
    @rule()
    def sweep(self) -> None:
        uow = UnitOfWork(ConnectionLease(SharedConnectionSource(self.conn)))
        changed = self.h.run(task_clock.sweep(uow, limit=100))
        assert changed == sum(self.touch(task) for task in self.tasks)

    # After every step --------------------------------------------------------------------------------------------

    @invariant()
    def ledger_matches_the_model(self) -> None:
        audit = self.call("get", "/admin/ledger/audit", self.admin_key, None, 200)
        assert audit["ok"] and not any(audit["violations"].values()), audit

        async def balances():
            cursor = await self.conn.execute(
                "SELECT coalesce(operator_id, -task_id), balance FROM account"
                " WHERE operator_id = ANY(%s) OR task_id = ANY(%s)",
                (list(self.wallets), [t.id for t in self.tasks]),
            )
            return dict(await cursor.fetchall())

        found = self.h.run(balances())
        expected = {**self.wallets, **{-t.id: t.escrow for t in self.tasks}}
        assert found == expected, f"ledger {found} != model {expected}"

        async def statuses():
            cursor = await self.conn.execute(
                "SELECT id, status FROM task WHERE id = ANY(%s)", ([t.id for t in self.tasks],)
            )
            return dict(await cursor.fetchall())

        assert self.h.run(statuses()) == {t.id: t.status for t in self.tasks}
        revenue = self.scalar("SELECT sum(balance) FROM account WHERE kind = 'platform_revenue'")
        assert revenue == self.revenue_at_start + self.fees


@pytest.mark.timeout(3600)
def test_marketplace_matches_its_model(test_databases: TestDatabases) -> None:
    harness = Harness(test_databases)
    try:
        MarketplaceMachine.harness = harness
        run_state_machine_as_test(MarketplaceMachine, settings=SETTINGS)
    finally:
        harness.close()
