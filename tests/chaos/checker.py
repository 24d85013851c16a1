"""After the faults and quiescence: the history against the database (reliability.md §7.1's oracle).

Every operation's effect is found by its token (see workload.py) or by the events and ledger transfers its kind
writes, counted per transaction. An acknowledged operation's effect must be there exactly once, a refused one's
not at all, and nothing may be there that no operation asked for. Unknown outcomes are resolved first, by sending
the operation again with its key: the stored response if it had committed, a first run if it had not.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from tests.chaos.cluster import Fault
from tests.chaos.history import Client, Op
from tests.chaos.workload import Workload

#: A 500 is forgiven this close to a fault (the process dying mid-response, PostgreSQL going away mid-statement).
FAULT_MARGIN_SECONDS = 2.0

# Created things, found by their operation's token: (kind, table, column, how the token appears).
CREATIONS = (
    ("create_operator", "SELECT id, name FROM operator", "soak-{}"),
    ("create_agent", "SELECT id, name FROM agent WHERE name LIKE 'a-%'", "a-{}"),
    ("register", "SELECT id, name FROM agent WHERE name NOT LIKE 'a-%'", "r{}"),
    ("create_webhook", "SELECT id, substring(url from '/h/([0-9a-f]+)$') FROM webhook", "{}"),
    ("post_task", "SELECT id, title FROM task", "soak {}"),
    ("bid", "SELECT id, message FROM claim", "{}"),
    ("deliver", "SELECT id, content FROM deliverable", "work {}"),
    ("grant", "SELECT id, reason FROM transfer WHERE kind = 'admin_grant'", "soak grant {}"),
)
# State changes, found by the events they write: (kind, event type, the data field naming what changed).
EVENTS = (
    ("post_task", "task.created", "task_id"),
    ("bid", "claim.created", "claim_id"),
    ("withdraw", "claim.withdrawn", "claim_id"),
    ("accept_bid", "claim.accepted", "claim_id"),
    ("deliver", "deliverable.submitted", "deliverable_id"),
    ("revision", "deliverable.revision_requested", "deliverable_id"),
    ("accept_deliverable", "deliverable.accepted", "deliverable_id"),
    ("cancel", "task.cancelled", "task_id"),
    ("rollback", "task.rolled_back", "task_id"),
)
# Money, found by transfer kind and what it is for: (kind, transfer kind, its column).
TRANSFERS = (
    ("create_operator", "operator_bonus", "operator_id"),
    ("post_task", "escrow_hold", "task_id"),
    ("accept_deliverable", "settlement", "task_id"),
    ("cancel", "refund", "task_id"),
)


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    phantom: int = 0  # an effect no acknowledged operation asked for
    counted: Counter[str] = field(default_factory=Counter)  # effects checked, by kind

    def problem(self, text: str) -> None:
        self.problems.append(text)


async def resolve_unknown(client: Client) -> list[Op]:
    """Send every `info` operation once more with its key (the checker's same-key retry); the ones it decided."""
    unknown = [op for op in client.ops if op.result == "info"]
    for op in unknown:
        await client.run(op, late=True)
    return [op for op in unknown if op.result != "info"]


def check_effects(url: str, client: Client, workload: Workload) -> Findings:
    findings = Findings()
    with psycopg.connect(url, autocommit=True) as db:
        by_kind: dict[str, list[Op]] = {}
        for op in client.ops:
            by_kind.setdefault(op.kind, []).append(op)
            if op.result == "info":
                findings.problem(f"op {op.id} {op.kind} {op.path}: outcome still unknown after the same-key retry")
        for kind, sql, shape in CREATIONS:
            _check_creations(findings, db, kind, sql, shape, by_kind.get(kind, []))
        events = db.execute("SELECT type, data, tx::text FROM event").fetchall()
        for kind, event_type, field_name in EVENTS:
            actual = Counter()
            seen: set[tuple] = set()
            for type_, data, tx in events:
                if type_ == event_type and (data[field_name], tx) not in seen:
                    seen.add((data[field_name], tx))
                    actual[data[field_name]] += 1
            expected = Counter(_event_target(op, field_name) for op in by_kind.get(kind, []) if op.result == "ok")
            _compare(findings, f"{kind} ({event_type})", expected, actual)
        transfers = db.execute("SELECT kind, operator_id, task_id, agent_id FROM transfer").fetchall()
        columns = {"operator_id": 1, "task_id": 2}
        for kind, transfer_kind, column in TRANSFERS:
            actual = Counter(row[columns[column]] for row in transfers if row[0] == transfer_kind)
            expected = Counter(_transfer_target(op, column) for op in by_kind.get(kind, []) if op.result == "ok")
            _compare(findings, f"{kind} ({transfer_kind} transfer)", expected, actual)
        # An agent's bonus: once when its operator created it, or once when an operator claimed it.
        bonus = Counter(row[3] for row in transfers if row[0] == "agent_bonus")
        given = [op.data["id"] for op in by_kind.get("create_agent", []) if op.result == "ok"]
        given += [op.target["agent"] for op in by_kind.get("claim_agent", []) if op.result == "ok"]
        _compare(findings, "agent bonus (agent_bonus transfer)", Counter(given), bonus)
        _check_keys(findings, db, [op for op in client.ops if op.key])
        _check_model(findings, db, workload)
    return findings


def _check_keys(findings: Findings, db, ops: list[Op]) -> None:
    """Each answered write's key is stored once, with the status it was answered (the record is what replays)."""
    stored: dict[str, list[tuple[int, str]]] = {}
    for key, status, path in db.execute("SELECT key, response_status, path FROM idempotency_key").fetchall():
        stored.setdefault(key, []).append((status, path))
    for op in ops:
        if op.result not in ("ok", "fail"):
            continue
        records = stored.get(op.key, [])
        findings.counted["idempotency keys"] += 1
        if records != [(op.status, f"/api/v1{op.path}")]:
            findings.problem(f"op {op.id} {op.kind} answered {op.status}: its key is stored as {records}")
    asked = {op.key for op in ops}
    for key in stored.keys() - asked:
        findings.phantom += 1
        findings.problem(f"PHANTOM: idempotency key {key!r} stored, never sent")


def _event_target(op: Op, field_name: str) -> object:
    if field_name == "task_id":
        return op.target.get("task") or op.data["id"]
    if field_name == "claim_id":
        return op.target.get("claim") or op.data["id"]
    return op.target.get("deliverable") or op.data["id"]


def _transfer_target(op: Op, column: str) -> object:
    if column == "operator_id":
        return op.data["id"]
    return op.target.get("task") or op.data["id"]


def _check_creations(findings: Findings, db, kind: str, sql: str, shape: str, ops: list[Op]) -> None:
    rows: dict[str, list[int]] = {}
    for row_id, text in db.execute(sql).fetchall():
        rows.setdefault(text, []).append(row_id)
    asked = set()
    for op in ops:
        mark = shape.format(op.target["token"])
        asked.add(mark)
        found = rows.get(mark, [])
        findings.counted[kind] += 1
        if op.result == "ok":
            expected_id = op.data["transfer_id"] if kind == "grant" else op.data["id"]
            if not found:
                findings.lost += 1
                findings.problem(f"LOST: op {op.id} {kind} acknowledged ({expected_id}) but nothing has its key")
            elif len(found) > 1:
                findings.duplicated += 1
                findings.problem(f"DUPLICATED: op {op.id} {kind} created {len(found)} rows: {found}")
            elif found[0] != expected_id:
                findings.problem(f"op {op.id} {kind}: answered id {expected_id}, the row is {found[0]}")
        elif op.result == "fail" and found:
            findings.phantom += 1
            findings.problem(f"PHANTOM: op {op.id} {kind} refused ({op.code}) but created {found}")
    for mark, ids in rows.items():
        if mark not in asked:
            findings.phantom += 1
            findings.problem(f"PHANTOM: {kind} rows {ids} ({mark!r}) without any operation asking for them")


def _compare(findings: Findings, what: str, expected: Counter, actual: Counter) -> None:
    for target in expected.keys() | actual.keys():
        want, got = expected[target], actual[target]
        findings.counted[what] += want
        if got < want:
            findings.lost += want - got
            findings.problem(f"LOST: {what} for {target}: {want} acknowledged, {got} in the database")
        elif got > want:
            if want:
                findings.duplicated += got - want
                findings.problem(f"DUPLICATED: {what} for {target}: {want} acknowledged, {got} in the database")
            else:
                findings.phantom += got
                findings.problem(f"PHANTOM: {what} for {target}: {got} in the database, none acknowledged")


def _check_model(findings: Findings, db, workload: Workload) -> None:
    """The tasks the workload knew to the end are in the state its acknowledged operations left them."""
    known = {**workload.tasks, **workload.finished}
    statuses = dict(db.execute("SELECT id, status FROM task").fetchall())
    claims = dict(db.execute("SELECT id, status FROM claim").fetchall())
    for task_id, task in known.items():
        if task_id in workload.retired:
            continue
        if statuses.get(task_id) != task.status:
            findings.problem(f"task {task_id}: the model says {task.status}, the database {statuses.get(task_id)}")
        for bid in task.bids.values():
            if claims.get(bid.id) != bid.status:
                findings.problem(f"claim {bid.id}: the model says {bid.status}, the database {claims.get(bid.id)}")
    for op in workload.unexpected:
        findings.problem(f"op {op.id} {op.kind} {op.path} refused unexpectedly: {op.status} {op.code} {op.data}")


def check_requests(client: Client, faults: list[Fault]) -> list[str]:
    """No request hung past its deadline; no 500 away from a fault."""
    problems = [f"request hung past its deadline: {hung}" for hung in client.hung]
    for response in client.responses:
        if response.status < 500 or response.status == 503:
            continue
        near = any(f.started - FAULT_MARGIN_SECONDS <= response.at <= f.ended + FAULT_MARGIN_SECONDS for f in faults)
        if response.status != 500 or not near:
            when = time.strftime("%H:%M:%S", time.localtime(response.at))
            problems.append(f"{response.status} from {response.url} at {when} (op {response.op}), no fault near")
    return problems
