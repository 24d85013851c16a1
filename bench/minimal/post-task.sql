-- Post task, the least SQL a correct implementation sends: 9 statements in 3 round trips (Agora: 17 in 8).
--
-- POST /api/v1/tasks with an Idempotency-Key: authenticate the agent, count the request against its rate limit,
-- create the task with its escrow account, move the budget from the operator's wallet into that escrow (one
-- balanced transfer of two entries), write one outbox event, store the rendered response under the key, commit.
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
--   The task and its escrow account, one statement, returning what the response shows (the ids, created_at, the
--     operator's name). Nothing needs checking before it: the body is validated before any SQL, an overdraft is
--     refused by the entry's CHECK, and if the claim fails the transaction is rolled back.
-- Round trip 3, a pipeline, sent once the response is rendered and sealed:
--   The transfer and its two entries, one statement: wallet -> escrow, entries in account id order so that
--     wallets lock in one order; the entry trigger moves each balance and the no-overdraft CHECK guards the
--     wallet; the deferred trigger checks at COMMIT that the transfer sums to zero.
--   One outbox event: the task's public status row (Agora also writes task.created to the poster, credit.posted
--     to every agent of the operator, and task.new_match to every matching agent).
--   The stored response, a plain INSERT (a live record of the key makes it fail, see above; so would an expired
--     record the sweeper has not deleted yet: that one is deleted and the request retried, a path taken only
--     when a key is reused after 24 hours, so the common path does not pay a DELETE for it).
--   COMMIT. No NOTIFY: outbox readers poll (Agora's NOTIFY only wakes them sooner). No savepoint: a business
--     error rolls back and stores its answer in a transaction of its own (rare), instead of every request
--     paying for a subtransaction.

-- @claim: bench/minimal/claim.sql goes here (authentication + rate limit, BEGIN, the idempotency claim)
WITH created AS (
    INSERT INTO task (poster_operator_id, poster_agent_id, title, description, budget_credits)
    VALUES (:operator_id, :agent_id, :title, :description, :budget)
    RETURNING id, created_at
), escrow AS (
    INSERT INTO account (kind, task_id) SELECT 'task_escrow', id FROM created RETURNING id
)
SELECT created.id AS task_id, escrow.id AS escrow_id, created.created_at,
       (SELECT name FROM operator WHERE id = :operator_id) AS poster_name
  FROM created, escrow;
\endpipeline

\startpipeline
WITH t AS (
    INSERT INTO transfer (kind, reason, operator_id, agent_id, task_id)
    VALUES ('escrow_hold', 'Escrow for task ' || currval('task_id_seq'), :operator_id, :agent_id,
            currval('task_id_seq'))
    RETURNING id
)
INSERT INTO entry (transfer_id, account_id, amount)
SELECT t.id, p.account_id, p.amount
  FROM t, (VALUES ((SELECT id FROM account WHERE operator_id = :operator_id), -(:budget)::bigint),
                  (currval('account_id_seq'), (:budget)::bigint)) AS p (account_id, amount)
 ORDER BY p.account_id;
INSERT INTO event (type, agent_id, task_id, data)
VALUES ('task.status', NULL, currval('task_id_seq'),
        jsonb_build_object('task_id', currval('task_id_seq'), 'title', (:title)::text, 'status', 'open',
                           'previous_status', NULL, 'claimed_by_agent_id', NULL, 'updated_at', now()));
INSERT INTO idempotency_key
       (principal, key, fingerprint, method, path, response_status, response_content_type, response_body, expires_at)
VALUES ('agent:' || :agent_id, :run || '-' || :n, :fingerprint, 'POST',
        '/api/v1/tasks',
        201, 'application/json', (:body)::bytea, statement_timestamp() + interval '24 hours');
COMMIT;
\endpipeline
