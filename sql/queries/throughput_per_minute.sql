-- title: Throughput per minute by event type
-- question: How many distinct events per minute, of each type (task-succeeded, task-failed, ...)? From the events_per_minute view.
-- params: cluster ('' = all clusters), name (unused: not every event carries it), since (epoch seconds; 0 = all time)
SELECT
    minute,
    type,
    uniqExactMerge(events) AS events
FROM {db}.events_per_minute
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND minute >= toDateTime(toUInt32(%(since)s))
GROUP BY minute, type
ORDER BY minute, type
