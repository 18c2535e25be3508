-- title: Clusters compared
-- question: How do the Celery clusters compare: volume, failures, runtime?
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds; 0 = all time)
SELECT
    cluster,
    count() AS tasks,
    countIf(state IN ('FAILED', 'CRITICAL')) AS failed,
    round(countIf(state IN ('FAILED', 'CRITICAL')) / count(), 4) AS failure_rate,
    round(quantileExact(0.95)(runtime) * 1000, 3) AS runtime_p95_ms,  -- NULLs (unfinished tasks) are skipped
    uniqExact(ifNull(worker, '')) AS workers
FROM {db}.tasks FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND first_seen_at >= %(since)s
GROUP BY cluster
ORDER BY tasks DESC, cluster
