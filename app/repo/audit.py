"""The ledger invariants of reliability.md §3.2 (L1-L10), the platform accounts' count (L11: a settlement credits a
sub-account its task id picks, so one missing would fail settlements) and the expiry's refund (L12: DESIGN §5), each
a query counting its violations."""

from __future__ import annotations

from app.repo.connections import Connection, one_row
from domain.ledger import REVENUE_SHARDS

INVARIANTS: dict[str, tuple[str, str]] = {
    "L1": (
        "every transfer has two or more entries summing to zero",
        """
        SELECT (SELECT count(*) FROM (SELECT transfer_id FROM entry GROUP BY transfer_id
                                       HAVING sum(amount) <> 0 OR count(*) < 2) unbalanced)
             + (SELECT count(*) FROM transfer t WHERE NOT EXISTS (SELECT 1 FROM entry e WHERE e.transfer_id = t.id))
    """,
    ),
    "L2": ("all balances sum to zero", "SELECT (coalesce(sum(balance), 0) <> 0)::int FROM account"),
    "L3": (
        "each cached balance equals the sum of its entries",
        """
        SELECT count(*) FROM account a
          LEFT JOIN (SELECT account_id, sum(amount) AS total FROM entry GROUP BY account_id) e
                 ON e.account_id = a.id
         WHERE a.balance <> coalesce(e.total, 0)
    """,
    ),
    "L4": (
        "each account's entries chain: versions 1..n, balance_after = previous + amount",
        """
        SELECT count(*) FROM (
            SELECT account_version, balance_after, amount,
                   lag(balance_after, 1, 0::bigint) OVER w AS previous,
                   row_number() OVER w AS position
              FROM entry WINDOW w AS (PARTITION BY account_id ORDER BY account_version)
        ) chain WHERE balance_after <> previous + amount OR account_version <> position
    """,
    ),
    "L5": (
        "no account but issuance below zero",
        "SELECT count(*) FROM account WHERE kind <> 'platform_issuance' AND balance < 0",
    ),
    "L6": (
        "each live task's escrow holds its budget; every other task's escrow is empty",
        """
        SELECT count(*) FROM task t LEFT JOIN account a ON a.task_id = t.id
         WHERE coalesce(a.balance, -1) <> CASE WHEN t.status IN ('open','claimed','in_progress','delivered')
                                               THEN t.budget_credits ELSE 0 END
    """,
    ),
    "L7": (
        "each completed task settled once, each cancelled or expired task refunded once, no other release",
        """
        SELECT count(*) FROM task t
          LEFT JOIN (SELECT task_id, count(*) FILTER (WHERE kind = 'settlement') AS settled,
                            count(*) FILTER (WHERE kind = 'refund') AS refunded,
                            count(*) FILTER (WHERE kind = 'escrow_hold') AS held
                       FROM transfer WHERE task_id IS NOT NULL GROUP BY task_id) r ON r.task_id = t.id
         WHERE coalesce(r.held, 0) <> 1
            OR coalesce(r.settled, 0) <> (t.status = 'completed')::int
            OR coalesce(r.refunded, 0) <> (t.status IN ('cancelled','expired'))::int
    """,
    ),
    "L8": (
        "transfers and entries are append-only (their guard triggers are in place)",
        """
        SELECT 4 - count(*) FROM pg_trigger
         WHERE tgname IN ('entry_append_only','entry_no_truncate','transfer_append_only','transfer_no_truncate')
           AND tgenabled <> 'D'
    """,
    ),
    "L9": (
        "a task's escrow is released at most once",
        """
        SELECT count(*) FROM (SELECT task_id FROM transfer WHERE kind IN ('settlement','refund')
                               GROUP BY task_id HAVING count(*) > 1) released_twice
    """,
    ),
    "L10": (
        "each account's version counts its entries",
        """
        SELECT count(*) FROM account a
          LEFT JOIN (SELECT account_id, count(*) AS n, max(account_version) AS top FROM entry GROUP BY account_id) e
                 ON e.account_id = a.id
         WHERE a.version <> coalesce(e.n, 0) OR a.version <> coalesce(e.top, 0)
    """,
    ),
    "L11": (
        f"platform revenue is {REVENUE_SHARDS} sub-accounts and issuance one account",
        f"""
        SELECT abs(count(*) FILTER (WHERE kind = 'platform_revenue') - {REVENUE_SHARDS})
             + abs(count(*) FILTER (WHERE kind = 'platform_issuance') - 1)
          FROM account WHERE kind IN ('platform_revenue', 'platform_issuance')
    """,
    ),
    "L12": (
        "each expired task refunded exactly once: one refund, of its whole budget, from its escrow to its poster's wallet",
        """
        SELECT count(*) FROM task t
          JOIN account escrow ON escrow.task_id = t.id
          CROSS JOIN LATERAL (
              SELECT count(*) AS refunds,
                     count(*) FILTER (WHERE EXISTS (
                         SELECT 1 FROM entry credit JOIN account w ON w.id = credit.account_id
                          WHERE credit.transfer_id = x.id AND credit.amount = t.budget_credits
                            AND w.kind = 'operator_wallet' AND w.operator_id = t.poster_operator_id)
                       AND EXISTS (
                         SELECT 1 FROM entry debit
                          WHERE debit.transfer_id = x.id AND debit.account_id = escrow.id
                            AND debit.amount = -t.budget_credits)) AS whole_to_poster
                FROM transfer x WHERE x.task_id = t.id AND x.kind = 'refund'
          ) r
         WHERE t.status = 'expired' AND (r.refunds <> 1 OR r.whole_to_poster <> 1)
    """,
    ),
}

_HASH = """
SELECT count(*), encode(sha256(coalesce(string_agg(
           concat_ws(':', id, transfer_id, account_id, amount, balance_after, account_version), ',' ORDER BY id),
       '')::bytea), 'hex')
  FROM entry
"""


async def count_violations(connection: Connection) -> dict[str, int]:
    """Run every invariant in one round trip (a pipeline), on one snapshot (the caller's repeatable-read
    transaction)."""
    async with connection.pipeline():
        cursors = {name: await connection.execute(query) for name, (_, query) in INVARIANTS.items()}
    return {name: int((await one_row(cursor))[0]) for name, cursor in cursors.items()}


async def ledger_hash(connection: Connection) -> tuple[int, str]:
    cursor = await connection.execute(_HASH)
    count, digest = await one_row(cursor)
    return count, digest
