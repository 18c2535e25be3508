-- title: Top exception types
-- question: Which exceptions end (or retry) the most tasks? still_retrying = tasks waiting for their next attempt (sql/fragments/waiting_to_retry.sql)
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds; 0 = all time)
SELECT
    exception_type,
    count() AS tasks,
    countIf(state IN ('FAILED', 'CRITICAL')) AS failed,
    countIf({waiting_to_retry}) AS still_retrying,
    uniqExact(name) AS task_names
FROM {db}.tasks FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND first_seen_at >= %(since)s AND exception_type IS NOT NULL
GROUP BY exception_type
ORDER BY tasks DESC, exception_type
