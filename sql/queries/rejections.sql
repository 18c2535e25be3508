-- title: Rejections: ignored vs requeued
-- question: Which tasks do workers reject, and are they dropped (ignored) or put back (requeued)?
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds; 0 = all time)
SELECT
    name,
    countIf(rejection = 'ignored') AS ignored,
    countIf(rejection = 'requeued') AS requeued,
    sum(requeues) AS requeues
FROM {db}.tasks FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND first_seen_at >= %(since)s AND rejection IS NOT NULL
GROUP BY name
ORDER BY ignored + requeued DESC, name
