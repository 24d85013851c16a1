"""A deterministic synthetic marketplace for the benchmark: rows per table, as tuples in id order.

Pure (standard library and `domain` only): the same `Config` always yields the same rows. Rows are streamed in
chunks of tasks, so a million tasks never sit in memory at once.

Order of use (the ledger is computed as it is generated, entry by entry, exactly as the triggers would have):

1. `operators()`, then `grant_transfers()` and `grant_entries()` (each wallet funded from platform issuance
   with enough for every budget it will ever hold);
2. `task_chunks()`: tasks with their escrow accounts, claims, deliverables, transfers and entries;
3. then `agents()`, `api_keys()`, `wallet_accounts()` and `platform_accounts()`, whose columns depend on the
   history generated in 2 (tasks completed, final balances and versions).

Every plaintext key is derivable (`agent_key`, `operator_key`) so that a load generator can authenticate.
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from app.repo.schema import metadata
from domain.keys import DISPLAY_PREFIX_LENGTH, KEY_PREFIXES, KeyKind
from domain.ledger import REVENUE_SHARDS, revenue_shard
from domain.tasks import settle

# Columns the generator leaves to their defaults (or to NULL): what a fresh marketplace has not used yet.
LEFT_TO_DEFAULTS: dict[str, frozenset[str]] = {
    "agent": frozenset({"verification_code", "claimed_at"}),
    "api_key": frozenset({"revoked_at", "last_used_at"}),
    # `search` is filled by the task's trigger (on during the load); the others are options no seeded task uses.
    "task": frozenset(
        {
            "search",
            "deadline",
            "claim_mode",
            "priority",
            "tags",
            "metadata",
            "expires_at",
            "callback_url",
            "eligible_agent_ids",
            "assignment_hours",
            "lease_expires_at",
            "priority_rank",  # generated from priority (COPY refuses a generated column)
            "auto_review_enabled",
        }
    ),
}
SEEDED_TABLES = ("operator", "agent", "api_key", "account", "task", "claim", "deliverable", "transfer", "entry")
# The columns COPY fills, in the schema's own order (app/repo/schema.py, the one definition of the tables): the
# generator's rows follow that order, so a column added to the schema without a default fails the load loudly.
COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(
        column.name
        for column in metadata.tables[table].columns
        if column.name not in LEFT_TO_DEFAULTS.get(table, frozenset())
    )
    for table in SEEDED_TABLES
}
# The tables a chunk of tasks fills, in the order they are written.
CHUNK_TABLES = ("task", "account", "claim", "deliverable", "transfer", "entry")

# Words of the marketplace's trade: frequent, so that searches for them are broad.
_DOMAIN_TEXT = (
    "python script api endpoint database query report analysis dashboard chart scrape crawl website data "
    "cleaning csv excel spreadsheet pdf invoice parse extract summary summarize article blog post newsletter "
    "translate translation japanese german french spanish english localisation review proofread edit copy "
    "marketing seo keyword research competitor market survey interview transcript audio video subtitle "
    "caption image logo design banner icon illustration mockup wireframe prototype interface frontend backend "
    "react typescript javascript rust golang java kotlin swift android mobile app deploy docker kubernetes "
    "cloud server linux bash automation workflow pipeline schedule cron email calendar meeting invite slack "
    "discord bot chatbot prompt model classifier sentiment reddit twitter social media campaign budget "
    "forecast finance accounting tax statement ledger reconcile benchmark performance latency optimise "
    "refactor bug fix unit test integration coverage documentation readme tutorial guide specification "
    "security audit vulnerability password encryption backup migration schema postgres mysql mongodb redis "
    "queue webhook notification monitoring alert log metric graph map geocode address"
)
DOMAIN_WORDS = tuple(_DOMAIN_TEXT.split())
_STRUCTURE = ("for", "with", "from", "into", "and", "the", "our", "new", "a", "to", "of", "using")
_TAIL_SIZE = 6000
_ZIPF_EXPONENT = 1.05
_TASK_STATUSES = ("claimed", "in_progress", "delivered", "completed", "cancelled")
_TASK_STATUS_WEIGHTS = (10, 10, 10, 50, 10)  # of the nine tenths that are not open
_STATUS_CUMULATIVE = [total / sum(_TASK_STATUS_WEIGHTS) for total in accumulate(_TASK_STATUS_WEIGHTS)][:-1]
_POOL_SIZE = 1 << 20
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_TASK_SPACING_SECONDS = 15


def agent_key(agent_id: int) -> str:
    """The plaintext API key of a seeded agent (only its SHA-256 is stored)."""
    return KEY_PREFIXES[KeyKind.AGENT] + hashlib.sha256(f"agora-bench-agent:{agent_id}".encode()).hexdigest()


def operator_key(operator_id: int) -> str:
    """The plaintext API key of a seeded operator."""
    return KEY_PREFIXES[KeyKind.OPERATOR] + hashlib.sha256(f"agora-bench-operator:{operator_id}".encode()).hexdigest()


def _synthetic_words(count: int) -> list[str]:
    """Made-up but pronounceable words (the long tail), the same for every seed."""
    rng = random.Random("agora-bench-vocabulary")
    onsets = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z")
    onsets += ("br", "cr", "dr", "fl", "gr", "kl", "pl", "pr", "st", "tr", "vr", "zh")
    vowels = ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou")
    codas = ["", "", "n", "r", "s", "x", "l", "m", "nd", "rk", "st", "v"]
    taken = set(DOMAIN_WORDS) | set(_STRUCTURE)
    words: list[str] = []
    while len(words) < count:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(2, 3))) + rng.choice(codas)
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


def vocabulary() -> tuple[list[str], list[float]]:
    """Every word with its Zipf-like cumulative weight: domain words hold the top ranks (interleaved with the
    head of the tail), so a few are very broad, most domain words match a few percent, tail words are rare."""
    tail = _synthetic_words(_TAIL_SIZE)
    ranked: list[str] = []
    for word, tail_word in zip(DOMAIN_WORDS, tail, strict=False):
        ranked.append(word)
        ranked.append(tail_word)
    ranked.extend(tail[len(DOMAIN_WORDS) :])
    weights = [1.0 / (rank + 3) ** _ZIPF_EXPONENT for rank in range(len(ranked))]
    return ranked, list(accumulate(weights))


def _between(rng: random.Random, low: int, high: int) -> int:
    """rng.randint(low, high), several times faster (the generator's hot path draws millions)."""
    return low + int(rng.random() * (high - low + 1))


_DAYS: dict[int, str] = {}


def _timestamp(seconds: int) -> str:
    """`_EPOCH + seconds` as PostgreSQL timestamptz text (several times faster than datetime.isoformat)."""
    day, rest = divmod(seconds, 86_400)
    date = _DAYS.get(day)
    if date is None:
        date = _DAYS[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{date} {hours:02d}:{minutes:02d}:{secs:02d}+00"


@dataclass(frozen=True, slots=True)
class Config:
    tasks: int
    seed: int = 1
    operators: int = 1000
    agents_per_operator: int = 5
    open_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.tasks < 1:
            raise ValueError("tasks must be at least 1")
        if self.operators < 2:
            raise ValueError("operators must be at least 2 (nobody bids on their own operator's tasks)")
        if self.agents_per_operator < 1:
            raise ValueError("agents_per_operator must be at least 1")

    @property
    def agents(self) -> int:
        return self.operators * self.agents_per_operator


@dataclass(frozen=True, slots=True)
class Ids:
    """Where the seeded rows start. The database must hold no operators, agents, tasks or transfers; the platform
    accounts (and any admin keys) already exist."""

    issuance_account: int = 1
    # The platform revenue sub-accounts, indexed by shard (migration 0008 creates them after issuance).
    revenue_accounts: tuple[int, ...] = tuple(range(2, 2 + REVENUE_SHARDS))
    first_account: int = 2 + REVENUE_SHARDS
    first_api_key: int = 1


class Dataset:
    def __init__(self, config: Config, ids: Ids | None = None, *, chunk_tasks: int = 20_000) -> None:
        self.config = config
        self.ids = ids or Ids()
        self.chunk_tasks = chunk_tasks
        self.words, self.cum_weights = vocabulary()
        self._pool = self._word_pool()
        self._pool_span = len(self._pool) - 64
        k = config.operators
        # Account ids: wallets first, then one escrow per task in task order.
        self._first_escrow = self.ids.first_account + k
        # Balances and versions of every account but escrows (those live and die with their task).
        platform = (self.ids.issuance_account, *self.ids.revenue_accounts)
        self._balance: dict[int, int] = dict.fromkeys(platform, 0)
        self._version: dict[int, int] = dict.fromkeys(platform, 0)
        for operator in range(1, k + 1):
            self._balance[self.wallet_id(operator)] = 0
            self._version[self.wallet_id(operator)] = 0
        self._completed_by_agent = [0] * (config.agents + 1)
        self._next_transfer = 1
        self._next_entry = 1
        self._next_claim = 1
        self._next_deliverable = 1
        self._tasks_done = False
        self._grants: list[int] | None = None

    # --- ids -------------------------------------------------------------------------------------------------

    def wallet_id(self, operator_id: int) -> int:
        return self.ids.first_account + operator_id - 1

    def escrow_id(self, task_id: int) -> int:
        return self._first_escrow + task_id - 1

    def operator_of(self, agent_id: int) -> int:
        return (agent_id - 1) // self.config.agents_per_operator + 1

    # --- the money stream: poster and budget of each task, replayed to size each operator's grant --------------

    def _money(self) -> Iterator[tuple[int, int]]:
        rng = random.Random(f"agora-bench:{self.config.seed}:money")
        agents = self.config.agents
        log_range = math.log(500)
        for _ in range(self.config.tasks):
            poster_agent = int(rng.random() * agents) + 1
            budget = int(10 * math.exp(rng.random() * log_range))  # 10..5000, log-uniform
            yield poster_agent, budget

    def _grant_amounts(self) -> list[int]:
        if self._grants is None:
            spend = [0] * (self.config.operators + 1)
            for poster_agent, budget in self._money():
                spend[self.operator_of(poster_agent)] += budget
            rng = random.Random(f"agora-bench:{self.config.seed}:grants")
            # Every budget it ever holds, plus a spending balance, so no wallet goes below zero in entry order.
            self._grants = [0] + [spend[o] + rng.randint(1000, 50_000) for o in range(1, self.config.operators + 1)]
        return self._grants

    # --- ledger ----------------------------------------------------------------------------------------------

    def _post(
        self,
        transfers: list[tuple],
        entries: list[tuple],
        kind: str,
        reason: str,
        legs: list[tuple[int, int]],
        at: str,
        *,
        operator_id: int | None = None,
        agent_id: int | None = None,
        task_id: int | None = None,
        escrow: list[int] | None = None,
    ) -> None:
        """Append one transfer and its entries (merged per account, zero legs dropped, in account id order, as
        `domain.ledger.balanced` does), moving the balances the way the `entry_apply` trigger would."""
        transfer_id = self._next_transfer
        self._next_transfer += 1
        transfers.append((transfer_id, kind, reason, operator_id, agent_id, task_id, at))
        total = 0
        for account, amount in sorted(legs):
            if amount == 0:
                continue
            total += amount
            if escrow is not None and account == escrow[0]:
                escrow[1] += amount
                escrow[2] += 1
                balance, version = escrow[1], escrow[2]
            else:
                balance = self._balance[account] + amount
                version = self._version[account] + 1
                self._balance[account] = balance
                self._version[account] = version
            entries.append((self._next_entry, transfer_id, account, amount, balance, version, at))
            self._next_entry += 1
        if total != 0:
            raise AssertionError(f"unbalanced {kind} transfer {transfer_id}")

    # --- rows --------------------------------------------------------------------------------------------------

    def operators(self) -> Iterator[tuple]:
        rng = random.Random(f"agora-bench:{self.config.seed}:operators")
        for operator in range(1, self.config.operators + 1):
            name = f"{rng.choice(self.words[:300]).title()} {rng.choice(self.words[300:3000]).title()} Labs {operator}"
            yield operator, name, _timestamp(-86_400 * 30 + operator)

    def grant_transfers_and_entries(self) -> tuple[list[tuple], list[tuple]]:
        """The admin grant funding each wallet (K transfers, 2K entries: small enough to hold)."""
        if self._next_transfer != 1:
            raise RuntimeError("grants come first")
        transfers: list[tuple] = []
        entries: list[tuple] = []
        issuance = self.ids.issuance_account
        for operator, amount in enumerate(self._grant_amounts()[1:], start=1):
            self._post(
                transfers,
                entries,
                "admin_grant",
                "Benchmark seed grant",
                [(issuance, -amount), (self.wallet_id(operator), amount)],
                _timestamp(-86_400 * 29 + operator),
                operator_id=operator,
            )
        return transfers, entries

    def _word_pool(self) -> list[str]:
        """A long stream of words drawn from the Zipf-like vocabulary, with function words sprinkled in: a text
        is a random slice of it (one draw per text instead of one per word, and the same word frequencies)."""
        rng = random.Random(f"agora-bench:{self.config.seed}:words")
        pool = rng.choices(self.words, cum_weights=self.cum_weights, k=_POOL_SIZE)
        for index in range(0, _POOL_SIZE - 7, 7):
            pool[index + int(rng.random() * 7)] = _STRUCTURE[int(rng.random() * len(_STRUCTURE))]
        return pool

    def _words(self, rng: random.Random, low: int, high: int) -> str:
        count = low + int(rng.random() * (high - low + 1))
        start = int(rng.random() * self._pool_span)
        return " ".join(self._pool[start : start + count])

    def _title(self, rng: random.Random) -> str:
        return self._words(rng, 4, 9).capitalize()

    def _description(self, rng: random.Random) -> str:
        return self._words(rng, 20, 45).capitalize() + "."

    def _other_agent(self, rng: random.Random, poster_operator: int, taken: set[int]) -> int:
        agents = self.config.agents
        while True:
            agent = int(rng.random() * agents) + 1
            if self.operator_of(agent) != poster_operator and agent not in taken:
                taken.add(agent)
                return agent

    def task_chunks(self) -> Iterator[dict[str, list[tuple]]]:
        """Tasks and everything hanging off them, `chunk_tasks` tasks at a time, each table's rows in id order."""
        if self._grants is None or self._next_transfer == 1:
            raise RuntimeError("write the grants before the tasks")
        config = self.config
        rng = random.Random(f"agora-bench:{config.seed}:tasks")
        money = self._money()
        revenue = self.ids.revenue_accounts
        n_other = config.agents - config.agents_per_operator
        max_bidders = min(4, n_other)
        chunk: dict[str, list[tuple]] = {table: [] for table in CHUNK_TABLES}
        tasks, accounts, claims, deliverables = chunk["task"], chunk["account"], chunk["claim"], chunk["deliverable"]
        transfers, entries = chunk["transfer"], chunk["entry"]
        for task_id in range(1, config.tasks + 1):
            poster_agent, budget = next(money)
            poster_op = self.operator_of(poster_agent)
            base = (task_id - 1) * _TASK_SPACING_SECONDS
            created = _timestamp(base)
            status = (
                "open"
                if rng.random() < config.open_fraction
                else _TASK_STATUSES[bisect_right(_STATUS_CUMULATIVE, rng.random())]
            )
            title = self._title(rng)
            description = self._description(rng)
            requirements = self._words(rng, 5, 15) + "." if rng.random() < 0.3 else None
            category = _between(rng, 1, 7) if rng.random() < 0.8 else None
            max_revisions = 2 if rng.random() < 0.7 else _between(rng, 0, 5)
            escrow_id = self.escrow_id(task_id)
            escrow = [escrow_id, 0, 0]
            self._post(
                transfers,
                entries,
                "escrow_hold",
                f"Escrow for task {task_id}",
                [(self.wallet_id(poster_op), -budget), (escrow_id, budget)],
                created,
                operator_id=poster_op,
                agent_id=poster_agent,
                task_id=task_id,
                escrow=escrow,
            )
            # Bids.
            taken: set[int] = set()
            worker = accepted_claim = price = None
            assignment = 0
            if status == "open":
                n_bids, bid_status = _between(rng, 0, 3), "pending"
            elif status == "cancelled":
                n_bids, bid_status = _between(rng, 0, 2), "rejected"
            else:
                n_bids, bid_status = _between(rng, 1, 4), "rejected"
            n_bids = min(n_bids, max_bidders)
            accepted_index = int(rng.random() * n_bids) if status not in ("open", "cancelled") else -1
            bid_time = base + 60
            for index in range(n_bids):
                agent = self._other_agent(rng, poster_op, taken)
                proposed = _between(rng, max(1, budget // 2), budget)
                message = self._words(rng, 3, 12) if rng.random() < 0.5 else None
                claim_id = self._next_claim
                self._next_claim += 1
                bid_status_here = bid_status
                if index == accepted_index:
                    bid_status_here = "accepted"
                    worker, accepted_claim, price, assignment = agent, claim_id, proposed, 1
                at = _timestamp(bid_time + 60 * index)
                claims.append(
                    (claim_id, task_id, agent, self.operator_of(agent), proposed, message, bid_status_here, at, at)
                )
            # Deliverables of the first (only) assignment.
            done_at = base + 3600
            if worker is not None and status != "claimed":
                rounds = _between(rng, 0, min(max_revisions, 2 if status != "in_progress" else 1))
                if status == "in_progress" and max_revisions == 0:
                    rounds = 0
                last = {"in_progress": None, "delivered": "submitted", "completed": "accepted"}[status]
                total_rounds = rounds + (1 if last else 0)
                for number in range(1, total_rounds + 1):
                    final = number > rounds
                    at = _timestamp(base + 1800 * number)
                    deliverables.append(
                        (
                            self._next_deliverable,
                            task_id,
                            worker,
                            1,
                            self._words(rng, 10, 30) + ".",
                            last if final else "revision_requested",
                            None if final else self._words(rng, 4, 12) + ".",
                            number,
                            at,
                            at,
                        )
                    )
                    self._next_deliverable += 1
                done_at = base + 1800 * (total_rounds + 1)
            updated = _timestamp(done_at)
            # Release of the escrow.
            if status == "completed":
                split = settle(budget, price)
                worker_op = self.operator_of(worker)
                self._post(
                    transfers,
                    entries,
                    "settlement",
                    f"Settlement of task {task_id}",
                    [
                        (escrow_id, -budget),
                        (self.wallet_id(worker_op), split.worker),
                        (revenue[revenue_shard(task_id)], split.fee),
                        (self.wallet_id(poster_op), split.refund),
                    ],
                    updated,
                    agent_id=worker,
                    task_id=task_id,
                    escrow=escrow,
                )
                self._completed_by_agent[worker] += 1
            elif status == "cancelled":
                self._post(
                    transfers,
                    entries,
                    "refund",
                    f"Refund for cancelled task {task_id}",
                    [(escrow_id, -budget), (self.wallet_id(poster_op), budget)],
                    updated,
                    operator_id=poster_op,
                    task_id=task_id,
                    escrow=escrow,
                )
            accounts.append((escrow_id, "task_escrow", None, task_id, escrow[1], escrow[2], created, None))
            tasks.append(
                (
                    task_id,
                    poster_op,
                    poster_agent,
                    title,
                    description,
                    requirements,
                    budget,
                    category,
                    status,
                    worker,
                    accepted_claim,
                    price,
                    assignment,
                    max_revisions,
                    created,
                    updated,
                )
            )
            if len(tasks) >= self.chunk_tasks or task_id == config.tasks:
                yield chunk
                chunk = {table: [] for table in CHUNK_TABLES}
                tasks, accounts, claims = chunk["task"], chunk["account"], chunk["claim"]
                deliverables, transfers, entries = chunk["deliverable"], chunk["transfer"], chunk["entry"]
        self._tasks_done = True

    def _require_tasks(self) -> None:
        if not self._tasks_done:
            raise RuntimeError("generate every task first: these rows depend on the whole history")

    def agents(self) -> Iterator[tuple]:
        self._require_tasks()
        rng = random.Random(f"agora-bench:{self.config.seed}:agents")
        domain = DOMAIN_WORDS
        for agent in range(1, self.config.agents + 1):
            created = _timestamp(-86_400 * 28 + agent)
            completed = self._completed_by_agent[agent]
            yield (
                agent,
                self.operator_of(agent),
                f"{rng.choice(domain).title()} agent {agent}",
                f"Handles {' and '.join(rng.sample(domain, 3))} work.",
                rng.sample(domain, rng.randint(1, 5)),
                sorted(rng.sample(range(1, 8), rng.randint(0, 3))),
                rng.choice((None, rng.randint(5, 200))),
                "active",
                round(min(100.0, 50 + completed * 0.1 + rng.random() * 10), 2),
                completed,
                round(3 + rng.random() * 2, 2) if completed else None,
                created,
                created,
            )

    def api_keys(self) -> Iterator[tuple]:
        """One live key per agent (ids in agent order), then one per operator."""
        key_id = self.ids.first_api_key
        for agent in range(1, self.config.agents + 1):
            plaintext = agent_key(agent)
            digest = hashlib.sha256(plaintext.encode()).hexdigest()
            yield key_id, "agent", digest, plaintext[:DISPLAY_PREFIX_LENGTH], None, agent, None, _EPOCH.isoformat()
            key_id += 1
        for operator in range(1, self.config.operators + 1):
            plaintext = operator_key(operator)
            digest = hashlib.sha256(plaintext.encode()).hexdigest()
            yield (
                key_id,
                "operator",
                digest,
                plaintext[:DISPLAY_PREFIX_LENGTH],
                None,
                None,
                operator,
                _EPOCH.isoformat(),
            )
            key_id += 1

    def wallet_accounts(self) -> Iterator[tuple]:
        self._require_tasks()
        for operator in range(1, self.config.operators + 1):
            wallet = self.wallet_id(operator)
            yield (
                wallet,
                "operator_wallet",
                operator,
                None,
                self._balance[wallet],
                self._version[wallet],
                _timestamp(-86_400 * 30 + operator),
                None,  # shard: only platform revenue's sub-accounts have one
            )

    def platform_accounts(self) -> list[tuple[int, int, int]]:
        """(account id, final balance, final version) of the platform accounts: issuance and the revenue shards."""
        self._require_tasks()
        return [
            (account, self._balance[account], self._version[account])
            for account in (self.ids.issuance_account, *self.ids.revenue_accounts)
        ]

    def expected_rows(self) -> dict[str, int]:
        """Estimated row counts per table (for the progress display); exact for task, agent, api_key, operator."""
        config = self.config
        n = config.tasks
        return {
            "operator": config.operators,
            "agent": config.agents,
            "api_key": config.agents + config.operators,
            "account": n + config.operators,
            "task": n,
            "claim": int(n * 2.25),
            "deliverable": int(n * 1.2),
            "transfer": int(n * 1.6) + config.operators,
            "entry": int(n * 4.16) + 2 * config.operators,
        }
