-- title: Failures by task name
-- question: Which tasks fail, and how often? failed = FAILED + CRITICAL (+ REJECTED shown apart).
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds; 0 = all time)
SELECT
    name,
    count() AS tasks,
    countIf(state IN ('FAILED', 'CRITICAL')) AS failed,
    countIf(state = 'REJECTED') AS rejected,
    round(failed / tasks, 4) AS failure_rate
FROM {db}.tasks FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND first_seen_at >= %(since)s
GROUP BY name
ORDER BY failed DESC, name
