-- title: CRITICAL tasks by name and exception
-- question: Which retry chains gave up, and on what?
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds; 0 = all time)
SELECT
    name,
    ifNull(exception_type, '') AS exception_type,
    count() AS tasks,
    max(retries) AS max_retries
FROM {db}.tasks FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND first_seen_at >= %(since)s AND state = 'CRITICAL'
GROUP BY name, exception_type
ORDER BY tasks DESC, name, exception_type
