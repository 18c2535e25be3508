-- title: Revocation reasons
-- question: Why were tasks revoked? expired, terminated (with the signal) or plainly revoked
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds; 0 = all time)
SELECT
    name,
    ifNull(revocation_reason, '') AS reason,
    ifNull(signum, 0) AS signum,
    count() AS tasks
FROM {db}.tasks FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND first_seen_at >= %(since)s AND state = 'REVOKED'
GROUP BY name, reason, signum
ORDER BY tasks DESC, name, reason, signum
