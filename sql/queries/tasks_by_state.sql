-- title: Tasks by state
-- question: How many tasks are in each state (final record per task)?
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds; 0 = all time)
SELECT state, count() AS tasks
FROM {db}.tasks FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND first_seen_at >= %(since)s
GROUP BY state
ORDER BY tasks DESC, state
