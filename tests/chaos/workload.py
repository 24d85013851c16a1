"""The soak's workload: the whole marketplace loop, driven by a seed, by concurrent clients.

Operators are made through the admin API, agents through their operator (created, or self-registered and then
claimed by verification code), and most agents register a webhook to the local receiver. Tasks then go through
their lives: bids, withdrawals, an accepted bid, deliveries, revision requests, rollbacks, cancellations, accepted
deliverables (settlement), with admin grants when a wallet runs dry, and a few reads.

Every created thing carries its operation's token (a task's title, a bid's message, a webhook's URL, ...), so the
checker finds each effect by its key alone. One client at a time works on a task (its lock), so the model below
knows each task's state and every request it sends should succeed: a refusal the model does not expect is itself
a finding (an acknowledged effect lost, or one applied twice). A task whose operation ended `info` is left alone
for the rest of the run; its operation is resolved afterwards.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from domain.events import SUBSCRIBABLE
from tests.chaos.history import Client, Op

DESCRIPTION = "A task of the chaos soak; the workload delivers it itself."


@dataclass
class Operator:
    id: int
    key: str


@dataclass
class Agent:
    id: int
    key: str
    operator: Operator


@dataclass
class Hook:
    id: int
    secret: str
    token: str
    events: tuple[str, ...]
    agent: Agent
    acknowledged_at: float  # time.time() when the creation was answered: later events must reach it


@dataclass
class Bid:
    id: int
    agent: Agent
    status: str = "pending"


@dataclass
class Task:
    id: int
    poster: Agent
    budget: int
    max_revisions: int
    status: str = "open"
    bids: dict[int, Bid] = field(default_factory=dict)
    worker: Bid | None = None
    deliverable: int | None = None  # the latest one
    deliveries: int = 0  # in this assignment
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def pending(self) -> list[Bid]:
        return [bid for bid in self.bids.values() if bid.status == "pending"]


@dataclass(frozen=True)
class Shape:
    """How big the world gets (the defaults make about 50 agents, as CHAOS-1 asks)."""

    operators: int = 12
    agents: int = 50
    live_tasks: int = 24
    clients: int = 16


class Workload:
    def __init__(self, client: Client, admin_key: str, hook_url, rng: random.Random, total: int, shape: Shape) -> None:
        self.client, self.admin_key, self.hook_url, self.rng = client, admin_key, hook_url, rng
        self.total, self.shape = total, shape
        self.operators: list[Operator] = []
        self.agents: list[Agent] = []
        self.hooks: list[Hook] = []
        self.tasks: dict[int, Task] = {}  # live, and known: the model's
        self.finished: dict[int, Task] = {}  # completed or cancelled
        self.retired: set[int] = set()  # tasks left alone after an unknown outcome
        self.unexpected: list[Op] = []  # refusals the model did not predict
        self.starving: set[int] = set()  # operators whose last post found the wallet short
        self._planned_operators = 0

    @property
    def done(self) -> bool:
        return len(self.client.ops) >= self.total

    def token(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    async def run(self) -> None:
        await asyncio.gather(*(self._client_loop(self.rng.random()) for _ in range(self.shape.clients)))

    async def _client_loop(self, seed: float) -> None:
        rng = random.Random(seed)  # each client's choices; the seed decides them all
        while not self.done:
            await self.step(rng)

    # --- sending -------------------------------------------------------------------------------------------------

    async def send(
        self,
        kind: str,
        path: str,
        auth: str,
        body: dict | None = None,
        *,
        token: str | None = None,
        expect: tuple[str, ...] = (),
        **target: object,
    ) -> Op:
        """One write with a fresh key, retried to a definite answer if it can be."""
        token = token or self.token()
        op = self.client.new(kind, "POST", path, auth=auth, key=f"soak-{token}", body=body, token=token, **target)
        await self.client.run(op)
        if op.result == "fail" and op.code not in expect:
            self.unexpected.append(op)
        return op

    async def read(self, kind: str, path: str, auth: str) -> None:
        await self.client.run(self.client.new(kind, "GET", path, auth=auth, key=None))

    # --- choosing ------------------------------------------------------------------------------------------------

    async def step(self, rng: random.Random) -> None:
        roll = rng.random()
        if self._planned_operators < self.shape.operators:
            self._planned_operators += 1
            await self.create_operator()
        elif not self.operators:
            await asyncio.sleep(0.05)  # the first operators are on their way
        elif len(self.agents) < 2 * len(self.operators) or (len(self.agents) < self.shape.agents and roll < 0.3):
            operator = rng.choice(self.operators)
            await (self.create_agent(operator) if rng.random() < 0.6 else self.register_and_claim(operator))
        elif roll < 0.03 or (self.starving and roll < 0.1):
            await self.grant(self.starving.pop() if self.starving else rng.choice(self.operators).id)
        elif roll < 0.06 and self.tasks:
            task = self.tasks[rng.choice(list(self.tasks))]
            await self.read("get_task", f"/tasks/{task.id}", task.poster.key)
        elif roll < 0.08:
            await self.read("credits", "/agents/me/credits", rng.choice(self.agents).key)
        else:
            idle = [t for t in self.tasks.values() if not t.lock.locked()]
            if len(self.tasks) < self.shape.live_tasks or not idle:
                await self.post_task(rng)
            else:
                task = rng.choice(idle)
                async with task.lock:
                    if task.id in self.tasks:
                        await self.advance(task, rng)

    # --- who is who ----------------------------------------------------------------------------------------------

    async def create_operator(self) -> None:
        token = self.token()
        op = await self.send(
            "create_operator", "/admin/operators", self.admin_key, {"name": f"soak-{token}"}, token=token
        )
        if op.result == "ok":
            operator = Operator(op.data["id"], op.data["api_key"])
            self.operators.append(operator)
            await self.create_agent(operator)

    async def create_agent(self, operator: Operator) -> None:
        token = self.token()
        body = {"name": f"a-{token}", "description": "An agent of the chaos soak"}
        op = await self.send("create_agent", "/operator/agents", operator.key, body, token=token, operator=operator.id)
        if op.result == "ok":
            await self._adopt(Agent(op.data["id"], op.data["api_key"], operator))

    async def register_and_claim(self, operator: Operator) -> None:
        token = self.token()
        body = {"name": f"r{token}", "description": "A self-registered agent of the chaos soak"}
        registered = await self.send("register", "/agents/register", "", body, token=token)
        if registered.result != "ok":
            return
        agent_id, code = registered.data["id"], registered.data["verification_code"]
        path, claim = "/operator/agents/claim", {"verification_code": code}
        op = await self.send("claim_agent", path, operator.key, claim, agent=agent_id, operator=operator.id)
        if op.result == "ok":
            await self._adopt(Agent(agent_id, registered.data["api_key"], operator))

    async def _adopt(self, agent: Agent) -> None:
        if self.rng.random() < 0.85:
            token = self.token()
            events = tuple(sorted(self.rng.sample(SUBSCRIBABLE, self.rng.randint(3, len(SUBSCRIBABLE)))))
            body = {"url": self.hook_url(token), "events": list(events)}
            op = await self.send("create_webhook", "/webhooks", agent.key, body, token=token, agent=agent.id)
            if op.result == "ok":
                self.hooks.append(Hook(op.data["id"], op.data["secret"], token, events, agent, time.time()))
        self.agents.append(agent)

    async def grant(self, operator_id: int) -> None:
        token = self.token()
        body = {"amount": 2000, "reason": f"soak grant {token}"}
        path = f"/admin/operators/{operator_id}/credits"
        await self.send("grant", path, self.admin_key, body, token=token, operator=operator_id)

    # --- tasks ---------------------------------------------------------------------------------------------------

    async def post_task(self, rng: random.Random) -> None:
        poster = rng.choice(self.agents)
        token = self.token()
        budget, rounds = rng.randint(10, 60), rng.randint(0, 2)
        overdraw = rng.random() < 0.04  # more than any wallet holds: refused, and nothing may move
        if overdraw:
            budget = 10**9
        body = {"title": f"soak {token}", "description": DESCRIPTION, "budget_credits": budget, "max_revisions": rounds}
        op = await self.send("post_task", "/tasks", poster.key, body, token=token, expect=("INSUFFICIENT_CREDITS",))
        if op.result == "ok":
            self.tasks[op.data["id"]] = Task(op.data["id"], poster, budget, rounds)
        elif op.code == "INSUFFICIENT_CREDITS" and not overdraw:
            self.starving.add(poster.operator.id)

    async def advance(self, task: Task, rng: random.Random) -> None:
        """One step of the task's life, chosen among those its state allows."""
        bidders: list[Agent] = []
        if task.status == "open":
            bidding = {b.agent.id for b in task.pending}
            bidders = [a for a in self.agents if a.operator is not task.poster.operator and a.id not in bidding]
            choices = {
                "bid": (3.0 if len(task.pending) < 3 else 0.5) if bidders else 0.0,
                "withdraw": 0.5 if task.pending else 0.0,
                "accept_bid": 2.5 if task.pending else 0.0,
                "cancel": 0.3,
            }
        elif task.status in ("claimed", "in_progress"):
            choices = {"deliver": 5.0, "rollback": 0.6, "cancel": 0.3 if task.status == "claimed" else 0.0}
        else:  # delivered
            choices = {"accept_deliverable": 3.0, "revision": 1.5 if task.deliveries < task.max_revisions + 1 else 0.0}
        action = rng.choices(list(choices), weights=list(choices.values()))[0]
        op = await getattr(self, f"_{action}")(task, rng, bidders)
        if op.result == "info":
            self.retired.add(task.id)
            self.tasks.pop(task.id, None)

    async def _bid(self, task: Task, rng: random.Random, bidders: list[Agent]) -> Op:
        agent, token = rng.choice(bidders), self.token()
        body = {"proposed_credits": rng.randint(1, task.budget), "message": token}
        op = await self.send("bid", f"/tasks/{task.id}/claims", agent.key, body, token=token, task=task.id)
        if op.result == "ok":
            task.bids[op.data["id"]] = Bid(op.data["id"], agent)
        return op

    async def _withdraw(self, task: Task, rng: random.Random, _: list[Agent]) -> Op:
        bid = rng.choice(task.pending)
        path = f"/tasks/{task.id}/claims/{bid.id}/withdraw"
        op = await self.send("withdraw", path, bid.agent.key, task=task.id, claim=bid.id)
        if op.result == "ok":
            bid.status = "withdrawn"
        return op

    async def _accept_bid(self, task: Task, rng: random.Random, _: list[Agent]) -> Op:
        bid = rng.choice(task.pending)
        path = f"/tasks/{task.id}/claims/{bid.id}/accept"
        op = await self.send("accept_bid", path, task.poster.key, task=task.id, claim=bid.id)
        if op.result == "ok":
            for other in task.pending:
                other.status = "rejected"
            bid.status, task.status, task.worker, task.deliveries = "accepted", "claimed", bid, 0
        return op

    async def _cancel(self, task: Task, rng: random.Random, _: list[Agent]) -> Op:
        op = await self.send("cancel", f"/tasks/{task.id}/cancel", task.poster.key, task=task.id)
        if op.result == "ok":
            for bid in task.bids.values():
                if bid.status in ("pending", "accepted"):
                    bid.status = "rejected"
            self._finish(task, "cancelled")
        return op

    async def _rollback(self, task: Task, rng: random.Random, _: list[Agent]) -> Op:
        op = await self.send("rollback", f"/tasks/{task.id}/rollback", task.poster.key, task=task.id)
        if op.result == "ok" and task.worker is not None:
            task.worker.status, task.worker, task.status = "rejected", None, "open"
        return op

    async def _deliver(self, task: Task, rng: random.Random, _: list[Agent]) -> Op:
        assert task.worker is not None
        token = self.token()
        path, body = f"/tasks/{task.id}/deliverables", {"content": f"work {token}"}
        op = await self.send("deliver", path, task.worker.agent.key, body, token=token, task=task.id)
        if op.result == "ok":
            task.deliverable, task.deliveries, task.status = op.data["id"], task.deliveries + 1, "delivered"
        return op

    async def _revision(self, task: Task, rng: random.Random, _: list[Agent]) -> Op:
        path = f"/tasks/{task.id}/deliverables/{task.deliverable}/revision"
        body = {"revision_notes": "Once more, please."}
        op = await self.send("revision", path, task.poster.key, body, task=task.id, deliverable=task.deliverable)
        if op.result == "ok":
            task.status = "in_progress"
        return op

    async def _accept_deliverable(self, task: Task, rng: random.Random, _: list[Agent]) -> Op:
        path = f"/tasks/{task.id}/deliverables/{task.deliverable}/accept"
        op = await self.send("accept_deliverable", path, task.poster.key, task=task.id, deliverable=task.deliverable)
        if op.result == "ok":
            self._finish(task, "completed")
        return op

    def _finish(self, task: Task, status: str) -> None:
        task.status = status
        self.tasks.pop(task.id, None)
        self.finished[task.id] = task
