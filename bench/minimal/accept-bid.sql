-- Accept bid, the least SQL a correct implementation sends: 10 statements in 3 round trips (Agora: 15 in 6).
--
-- POST /api/v1/tasks/{task}/claims/{claim}/accept with an Idempotency-Key: authenticate the poster's agent, count
-- the request, lock the task and read the bid, check (the caller's operator posted the task, the task is open,
-- the bid is this task's and pending), assign the task to the bidder at the bid's price, accept the bid and reject
-- the task's other pending bids, write one outbox event, store the response, commit. No credits move: the budget
-- has been in the task's escrow since it was posted, and leaves it when the work is accepted.
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
--   The task's row lock and the bid, one statement (FOR UPDATE OF the task only: every change to a task's bids
--     takes the task's lock first, so the bid rows need none of their own).
-- Round trip 3, a pipeline, sent once the response is rendered (it shows only ids the request named and the
-- bidder's id, read above):
--   The task: claimed by the bidder, at the bid's price, its next assignment (revision rounds count per
--     assignment).
--   The bids, one statement: this one accepted, every other pending one rejected (the partial unique index on
--     accepted bids backs the one-accepted-bid rule).
--   One outbox event: claim.accepted to the winner (Agora also writes task.status to the public stream and both
--     parties, and claim.rejected to every rejected bidder).
--   The stored response, a plain INSERT (a live record of the key makes it fail, see above; so would an expired
--     record the sweeper has not deleted yet: that one is deleted and the request retried, a path taken only
--     when a key is reused after 24 hours, so the common path does not pay a DELETE for it).
--   COMMIT. No NOTIFY: outbox readers poll (Agora's NOTIFY only wakes them sooner). No savepoint: a business
--     error rolls back and stores its answer in a transaction of its own (rare), instead of every request
--     paying for a subtransaction.

-- @claim: bench/minimal/claim.sql goes here (authentication + rate limit, BEGIN, the idempotency claim)
SELECT t.status, t.poster_operator_id, t.assignment, c.task_id AS claim_task_id, c.agent_id AS bidder_id,
       c.status AS claim_status, c.proposed_credits
  FROM task t LEFT JOIN claim c ON c.id = :claim_id
 WHERE t.id = :task_id
   FOR UPDATE OF t;
\endpipeline

\startpipeline
UPDATE task SET status = 'claimed', claimed_by_agent_id = :worker_id, accepted_claim_id = :claim_id,
                price_credits = :price, assignment = assignment + 1, updated_at = statement_timestamp()
 WHERE id = :task_id;
UPDATE claim SET status = CASE WHEN id = :claim_id THEN 'accepted' ELSE 'rejected' END,
                 updated_at = statement_timestamp()
 WHERE task_id = :task_id AND status = 'pending';
INSERT INTO event (type, agent_id, task_id, data)
VALUES ('claim.accepted', :worker_id, :task_id,
        jsonb_build_object('task_id', (:task_id)::bigint, 'claim_id', (:claim_id)::bigint,
                           'agent_id', (:worker_id)::bigint, 'price_credits', (:price)::bigint));
INSERT INTO idempotency_key
       (principal, key, fingerprint, method, path, response_status, response_content_type, response_body, expires_at)
VALUES ('agent:' || :agent_id, :run || '-' || :n, :fingerprint, 'POST',
        '/api/v1/tasks/' || :task_id || '/claims/' || :claim_id || '/accept',
        200, 'application/json', (:body)::bytea, statement_timestamp() + interval '24 hours');
COMMIT;
\endpipeline
