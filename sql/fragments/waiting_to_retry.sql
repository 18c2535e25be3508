-- fragment: waiting_to_retry — a task waiting for its next attempt (docs/state-rules.md, "Waiting to retry").
-- Used as {waiting_to_retry} in sql/queries/*.sql, so every question counts the same tasks.
--   * RETRY: its last attempt ended with task-retried and the next one has not been received;
--   * RECEIVED with retries > 0 and no started_at for that attempt (started_at is the current
--     attempt's): the worker already holds the retry's message — Celery usually emits
--     task-received(n+1) before task-retried(n) — and waits for its countdown/ETA.
state = 'RETRY' OR (state = 'RECEIVED' AND retries > 0 AND started_at IS NULL)
