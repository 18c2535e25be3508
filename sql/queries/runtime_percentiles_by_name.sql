-- title: Runtime percentiles by task name (ms)
-- question: How slow is each task when it succeeds? (runtime as reported by the worker)
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds; 0 = all time)
SELECT
    name,
    count() AS succeeded,
    round(quantileExact(0.5)(runtime) * 1000, 3) AS p50_ms,
    round(quantileExact(0.95)(runtime) * 1000, 3) AS p95_ms,
    round(quantileExact(0.99)(runtime) * 1000, 3) AS p99_ms
FROM {db}.tasks FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND first_seen_at >= %(since)s AND runtime IS NOT NULL
GROUP BY name
ORDER BY name
