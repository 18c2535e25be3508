-- title: Failure groups
-- question: Which failures are the same problem? Failed and critical tasks grouped by cluster, task name, exception type and the message's fingerprint (numbers, hex ids, uuids and addresses masked: sql/fragments/failure_fingerprint.sql), newest first
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds of the failure; 0 = all time)
SELECT
    cluster,
    name,
    exception_type,
    fingerprint,
    count() AS failures,
    toDateTime(min(at)) AS first_seen,
    toDateTime(max(at)) AS last_seen,
    uniqExact(worker) AS workers,
    argMax(uuid, at) AS latest_task
FROM
(
    SELECT cluster, uuid, name, ifNull(exception_type, '') AS exception_type, {failure_fingerprint} AS fingerprint,
           ifNull(worker, '') AS worker, ifNull(failed_at, last_seen_at) AS at
    FROM {db}.tasks FINAL
    WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND ifNull(failed_at, last_seen_at) >= %(since)s
      AND state IN ('FAILED', 'CRITICAL')
)
GROUP BY cluster, name, exception_type, fingerprint
ORDER BY last_seen DESC, failures DESC, cluster, name, exception_type, fingerprint
