-- fragment: waiting_to_retry — a task waiting for its next attempt (docs/state-rules.md, "Waiting to retry").
-- Used as {waiting_to_retry} in sql/queries/*.sql, so every question counts the same tasks.
--   * RETRY: its last attempt ended with task-retried and the next one has not been received;
--   * RECEIVED with retries > 0: the worker already holds the retry's message (Celery emits
--     task-received(n+1) before task-retried(n) most of the time) and waits for its countdown/ETA.
--     RECEIVED means no task-started for this delivery yet (rule 4 counts started events against
--     ended deliveries), so no clock comparison is needed (or trusted) here.
state = 'RETRY' OR (state = 'RECEIVED' AND retries > 0)
