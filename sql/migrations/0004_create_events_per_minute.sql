-- Throughput per minute, by cluster and event type, kept up to date by a materialized view.
-- At-least-once delivery inserts some events twice and a view sees every insert, so the view
-- does not add counts: it keeps uniqExact states of the event identity's hash, and merging them
-- counts each distinct event once whatever was re-inserted. Read with uniqExactMerge(events).
-- (Runtime percentiles are read from tasks FINAL instead: a task's record is re-inserted on
-- every change and redelivery, and quantile states cannot forget the copies.)
-- up
CREATE TABLE IF NOT EXISTS {db}.events_per_minute
(
    cluster String,
    minute  DateTime,
    type    String,
    events  AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (cluster, minute, type);
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_per_minute_mv TO {db}.events_per_minute
AS SELECT
    cluster,
    toStartOfMinute(event_time) AS minute,
    type,
    uniqExactState(cityHash64(cluster, uuid, type, hostname, pid, clock, timestamp)) AS events
FROM {db}.events
GROUP BY cluster, minute, type
-- down
DROP TABLE IF EXISTS {db}.events_per_minute_mv;
DROP TABLE IF EXISTS {db}.events_per_minute
