-- The opening every minimal write shares, spliced in by tests/bench/minimal.py where a script says @claim
-- (pgbench has no include): round trip 1 authenticates the agent's key and takes its rate-limit slot in one
-- statement; round trip 2 opens the pipeline with BEGIN, a durable commit and the idempotency claim, and the
-- script goes on inside it with its own row lock. Each script's header explains these statements.

WITH caller AS (
    SELECT k.agent_id, a.operator_id, a.name
      FROM api_key k JOIN agent a ON a.id = k.agent_id
     WHERE k.key_hash = :key_hash AND k.kind = 'agent' AND k.revoked_at IS NULL AND a.status = 'active'
), admitted AS (
    INSERT INTO rate_limit AS r (principal, tat)
    SELECT 'agent:' || agent_id, statement_timestamp() + (:emission)::interval FROM caller
    ON CONFLICT (principal) DO UPDATE SET tat = greatest(r.tat, statement_timestamp()) + (:emission)::interval
     WHERE greatest(r.tat, statement_timestamp()) + (:emission)::interval <= statement_timestamp() + (:window)::interval
    RETURNING tat
)
SELECT c.agent_id, c.operator_id, c.name AS agent_name, (SELECT tat FROM admitted) AS admitted_until
  FROM caller c \gset

\startpipeline
BEGIN;
SELECT pg_try_advisory_xact_lock(hashtextextended('agent:' || :agent_id || '|' || :run || '-' || :n, 7302)) AS locked,
       (SELECT response_status FROM idempotency_key
         WHERE principal = 'agent:' || :agent_id AND key = :run || '-' || :n
           AND expires_at > statement_timestamp()) AS stored_status;
