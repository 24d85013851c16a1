-- Deliver, the least SQL a correct implementation sends: 10 statements in 3 round trips (Agora: 16 in 8).
--
-- POST /api/v1/tasks/{task}/deliverables {"content": ...} with an Idempotency-Key: authenticate the worker,
-- count the request, lock the task and check (the caller is its worker, it is claimed or in progress, revision
-- rounds are left), insert the deliverable as the next revision of this assignment, mark the task delivered,
-- write one outbox event, store the response, commit. No credits move.
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
--   The task's row lock and everything the rules and the response need, one statement: its state, the
--     deliverables already submitted for this assignment (the next one's revision number; the unique (task,
--     assignment, revision) index backs it), the new deliverable's id drawn from its sequence (the response can
--     then be rendered before the insert: one round trip fewer) and now(), its submitted_at.
-- Round trip 3, a pipeline, sent once the response is rendered and sealed:
--   The deliverable, with the id drawn above.
--   The task: delivered.
--   One outbox event: deliverable.submitted to the poster's agent (Agora also writes task.status to the public
--     stream and both parties).
--   The stored response, a plain INSERT (a live record of the key makes it fail, see above; so would an expired
--     record the sweeper has not deleted yet: that one is deleted and the request retried, a path taken only
--     when a key is reused after 24 hours, so the common path does not pay a DELETE for it).
--   COMMIT. No NOTIFY: outbox readers poll (Agora's NOTIFY only wakes them sooner). No savepoint: a business
--     error rolls back and stores its answer in a transaction of its own (rare), instead of every request
--     paying for a subtransaction.

-- @claim: bench/minimal/claim.sql goes here (authentication + rate limit, BEGIN, the idempotency claim)
SELECT t.status, t.claimed_by_agent_id, t.assignment, t.max_revisions, t.deadline, t.poster_agent_id, t.title,
       (SELECT count(*) FROM deliverable d WHERE d.task_id = t.id AND d.assignment = t.assignment) AS submitted,
       nextval('deliverable_id_seq') AS deliverable_id, now() AS submitted_at
  FROM task t
 WHERE t.id = :task_id
   FOR UPDATE;
\endpipeline

\startpipeline
INSERT INTO deliverable (id, task_id, agent_id, assignment, content, revision_number)
VALUES (currval('deliverable_id_seq'), :task_id, :agent_id, :assignment, :content, :revision);
UPDATE task SET status = 'delivered', updated_at = statement_timestamp() WHERE id = :task_id;
INSERT INTO event (type, agent_id, task_id, data)
VALUES ('deliverable.submitted', :poster_agent_id, :task_id,
        jsonb_build_object('task_id', (:task_id)::bigint, 'deliverable_id', currval('deliverable_id_seq'),
                           'agent_id', (:agent_id)::bigint, 'revision_number', (:revision)::int));
INSERT INTO idempotency_key
       (principal, key, fingerprint, method, path, response_status, response_content_type, response_body, expires_at)
VALUES ('agent:' || :agent_id, :run || '-' || :n, :fingerprint, 'POST',
        '/api/v1/tasks/' || :task_id || '/deliverables',
        201, 'application/json', (:body)::bytea, statement_timestamp() + interval '24 hours');
COMMIT;
\endpipeline
