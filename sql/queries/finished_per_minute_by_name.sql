-- title: Finished tasks per minute by task name and final state
-- question: How many tasks of each name finished per minute, and how (SUCCEEDED, RECOVERED, FAILED, CRITICAL, REVOKED, REJECTED)? Bucketed by the time of the finishing event.
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds; 0 = all time)
SELECT
    toStartOfMinute(toDateTime(toUInt32(finished_at))) AS minute,
    name,
    state,
    count() AS tasks
FROM
(
    SELECT
        name,
        state,
        multiIf(state IN ('SUCCEEDED', 'RECOVERED'), ifNull(succeeded_at, 0),
                state IN ('FAILED', 'CRITICAL'), ifNull(failed_at, 0),
                state = 'REVOKED', ifNull(revoked_at, 0),
                -- REJECTED: the task's own Reject; without acks_late only its task-failed says so
                greatest(ifNull(rejected_at, 0), ifNull(failed_at, 0))) AS finished_at
    FROM {db}.tasks FINAL
    WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND first_seen_at >= %(since)s
      AND state IN ('SUCCEEDED', 'RECOVERED', 'FAILED', 'CRITICAL', 'REVOKED', 'REJECTED')
)
WHERE finished_at > 0
GROUP BY minute, name, state
ORDER BY minute, name, state
