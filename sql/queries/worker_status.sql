-- title: Worker status
-- question: Which workers are online, which left or stopped sending heartbeats, and how loaded are they?
-- params: cluster ('' = all clusters), name (unused: workers run every task), since (unused: workers are current state)
SELECT cluster, hostname, state, ifNull(offline_reason, '') AS offline_reason,
       ifNull(active, 0) AS active, ifNull(processed, 0) AS processed
FROM {db}.workers FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND %(since)s >= 0
ORDER BY cluster, hostname
