-- Accept deliverable, the least SQL a correct implementation sends: 11 statements in 3 round trips (Agora: 17
-- in 5).
--
-- POST /api/v1/tasks/{task}/deliverables/{deliverable}/accept with an Idempotency-Key: authenticate the poster's
-- agent, count the request, lock the task and read the deliverable and the accounts, check (the caller's operator
-- posted the task, it is delivered, the deliverable is this task's and submitted), accept the deliverable,
-- complete the task, settle the escrow in one balanced transfer (escrow -> the worker's wallet: the price less the
-- fee; -> the platform's revenue: floor(price x 10 %); -> the poster's wallet: budget - price; a leg of 0 is left
-- out, an entry is never 0), write one outbox event, store the response, commit.
--
-- The harness prepends the lookup of this request's values (one primary-key read of the values table, whose
-- cost it takes off, as for the replay) and passes the constants with -D (tests/bench/minimal.py). pgbench cannot
-- read a pipeline's results (no \gset there): where the app would send back a value that round trip 2 returned,
-- the script takes it from the values table (read from the same rows when the targets were chosen) or from
-- currval(), the same value.
--
-- Round trip 1, one statement, outside the transaction (autocommit; the rate limit's table is unlogged, so its
-- commit waits for no WAL flush, as in Agora: a crash may forget a rate-limit tick, never money):
--   auth + rate limit: the key by its SHA-256 (unique index), its agent (active, claimed by an operator), and
--   GCRA's single-row upsert; admitted_until is NULL when the limit refuses (answer 429). Not done:
--   api_key.last_used_at (Agora writes it at most once a minute per key, a convenience).
-- Round trip 2, a pipeline (nothing in it needs another's result):
--   BEGIN, and durable commit for this transaction only.
--   The idempotency claim, one statement: the transaction-scoped advisory lock on (principal, key) (false: the
--     first request is still running, 409) and any live stored response (replay it). Its snapshot predates the
--     lock, so a first request committing in between goes unseen; nothing runs twice all the same: the unique
--     (principal, key) index then refuses this request's store, and the transaction with it.
--   The task's row lock, the deliverable and the three accounts the settlement credits or debits, one statement
--     (the platform's revenue account is a singleton created by the migrations: an implementation reads its id
--     once at startup, so it is a constant here).
-- Round trip 3, a pipeline, sent once the response is rendered (it shows only ids the request named):
--   The deliverable: accepted. The task: completed. (Agora also counts the worker's completed tasks on the agent
--     row, a figure a profile could as well count from the tasks, by the index on their worker.)
--   The settlement and its entries, one statement, entries in account id order so the wallets and the revenue
--     account lock in one order; the entry trigger moves each balance; the deferred trigger checks at COMMIT that
--     the transfer sums to zero; the unique index on a task's settlement or refund makes it happen once. It comes
--     last before the store: the revenue account, which every settlement credits, stays locked only while this
--     round trip and the commit run.
--   One outbox event: deliverable.accepted to the worker (Agora also writes task.status to the public stream and
--     both parties, and credit.posted to every agent of the two operators whose wallets moved).
--   The stored response, a plain INSERT (a live record of the key makes it fail, see above; so would an expired
--     record the sweeper has not deleted yet: that one is deleted and the request retried, a path taken only
--     when a key is reused after 24 hours, so the common path does not pay a DELETE for it).
--   COMMIT. No NOTIFY: outbox readers poll (Agora's NOTIFY only wakes them sooner). No savepoint: a business
--     error rolls back and stores its answer in a transaction of its own (rare), instead of every request
--     paying for a subtransaction.

-- @claim: bench/minimal/claim.sql goes here (authentication + rate limit, BEGIN, the idempotency claim)
SELECT t.status, t.poster_operator_id, t.budget_credits, t.price_credits, t.claimed_by_agent_id,
       d.task_id AS deliverable_task_id, d.status AS deliverable_status,
       (SELECT e.id FROM account e WHERE e.task_id = t.id) AS escrow_id,
       (SELECT w.id FROM agent a JOIN account w ON w.operator_id = a.operator_id WHERE a.id = t.claimed_by_agent_id)
           AS worker_wallet,
       (SELECT p.id FROM account p WHERE p.operator_id = t.poster_operator_id) AS poster_wallet
  FROM task t LEFT JOIN deliverable d ON d.id = :deliverable_id
 WHERE t.id = :task_id
   FOR UPDATE OF t;
\endpipeline

\set fee :price * 10 / 100
\set paid :price - :fee
\set refund :budget - :price
\startpipeline
UPDATE deliverable SET status = 'accepted', updated_at = statement_timestamp() WHERE id = :deliverable_id;
UPDATE task SET status = 'completed', updated_at = statement_timestamp() WHERE id = :task_id;
WITH t AS (
    INSERT INTO transfer (kind, reason, agent_id, task_id)
    VALUES ('settlement', 'Settlement of task ' || :task_id, :worker_id, :task_id)
    RETURNING id
)
INSERT INTO entry (transfer_id, account_id, amount)
SELECT t.id, p.account_id, p.amount
  FROM t, (VALUES ((:escrow_id)::bigint, -(:budget)::bigint), ((:worker_wallet)::bigint, (:paid)::bigint),
                  ((:revenue_id)::bigint, (:fee)::bigint), ((:poster_wallet)::bigint, (:refund)::bigint))
          AS p (account_id, amount)
 WHERE p.amount <> 0
 ORDER BY p.account_id;
INSERT INTO event (type, agent_id, task_id, data)
VALUES ('deliverable.accepted', :worker_id, :task_id,
        jsonb_build_object('task_id', (:task_id)::bigint, 'deliverable_id', (:deliverable_id)::bigint,
                           'credits_paid', (:paid)::bigint, 'platform_fee', (:fee)::bigint));
INSERT INTO idempotency_key
       (principal, key, fingerprint, method, path, response_status, response_content_type, response_body, expires_at)
VALUES ('agent:' || :agent_id, :run || '-' || :n, :fingerprint, 'POST',
        '/api/v1/tasks/' || :task_id || '/deliverables/' || :deliverable_id || '/accept',
        200, 'application/json', (:body)::bytea, statement_timestamp() + interval '24 hours');
COMMIT;
\endpipeline
