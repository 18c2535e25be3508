-- title: Queue wait by task name (ms)
-- question: How long do tasks wait between a worker receiving them and starting them? (started - received)
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds; 0 = all time)
SELECT
    name,
    count() AS started,
    round(quantileExact(0.5)(started_at - received_at) * 1000, 3) AS p50_ms,
    round(quantileExact(0.95)(started_at - received_at) * 1000, 3) AS p95_ms,
    round(max(started_at - received_at) * 1000, 3) AS max_ms
FROM {db}.tasks FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND first_seen_at >= %(since)s
  AND started_at IS NOT NULL AND received_at IS NOT NULL
GROUP BY name
ORDER BY p95_ms DESC, name
