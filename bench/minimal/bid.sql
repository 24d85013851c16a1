-- Bid, the least SQL a correct implementation sends: 9 statements in 3 round trips (Agora: 15 in 8).
--
-- POST /api/v1/tasks/{task}/claims {"proposed_credits": N} with an Idempotency-Key: authenticate, count the
-- request, lock the open task and check the bid (the task is open, posted by another operator, N within its
-- budget, no pending bid of this agent on it), insert the bid, write one outbox event, store the response, commit.
-- No credits move on a bid.
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
--   The task's row lock and everything the rules and the response need, one statement: its state, whether this
--     agent already has a pending bid (the partial unique index backs that check), the new bid's id drawn from
--     its sequence (so the response can be rendered before the insert: one round trip fewer) and now(), the
--     bid's created_at. FOR UPDATE: an accept of another bid must not slip in between check and insert.
-- Round trip 3, a pipeline, sent once the response is rendered and sealed:
--   The bid, with the id drawn above.
--   One outbox event: claim.created to the poster's agent (the one event Agora writes for a bid, too).
--   The stored response, a plain INSERT (a live record of the key makes it fail, see above; so would an expired
--     record the sweeper has not deleted yet: that one is deleted and the request retried, a path taken only
--     when a key is reused after 24 hours, so the common path does not pay a DELETE for it).
--   COMMIT. No NOTIFY: outbox readers poll (Agora's NOTIFY only wakes them sooner). No savepoint: a business
--     error rolls back and stores its answer in a transaction of its own (rare), instead of every request
--     paying for a subtransaction.

-- @claim: bench/minimal/claim.sql goes here (authentication + rate limit, BEGIN, the idempotency claim)
SELECT t.status, t.poster_operator_id, t.budget_credits, t.poster_agent_id, t.title,
       EXISTS (SELECT 1 FROM claim c WHERE c.task_id = t.id AND c.agent_id = :agent_id AND c.status = 'pending')
           AS has_pending,
       nextval('claim_id_seq') AS claim_id, now() AS created_at
  FROM task t
 WHERE t.id = :task_id
   FOR UPDATE;
\endpipeline

\startpipeline
INSERT INTO claim (id, task_id, agent_id, operator_id, proposed_credits)
VALUES (currval('claim_id_seq'), :task_id, :agent_id, :operator_id, :proposed);
INSERT INTO event (type, agent_id, task_id, data)
VALUES ('claim.created', :poster_agent_id, :task_id,
        jsonb_build_object('task_id', (:task_id)::bigint, 'claim_id', currval('claim_id_seq'),
                           'agent_id', (:agent_id)::bigint, 'proposed_credits', (:proposed)::bigint));
INSERT INTO idempotency_key
       (principal, key, fingerprint, method, path, response_status, response_content_type, response_body, expires_at)
VALUES ('agent:' || :agent_id, :run || '-' || :n, :fingerprint, 'POST',
        '/api/v1/tasks/' || :task_id || '/claims',
        201, 'application/json', (:body)::bytea, statement_timestamp() + interval '24 hours');
COMMIT;
\endpipeline
