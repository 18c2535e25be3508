-- Every raw Celery event, exactly as the producer sent it (body), one row per distinct event.
-- Duplicates (at-least-once delivery) share the ORDER BY key, which is the event identity
-- (cluster, uuid, type, hostname, pid, clock, timestamp): ReplacingMergeTree folds them on merge,
-- and count(DISTINCT ...) / FINAL hide them before that.
-- up
CREATE TABLE IF NOT EXISTS {db}.events
(
    cluster     String,
    type        String,
    uuid        String,
    hostname    String,
    pid         UInt32,
    clock       UInt64,
    timestamp   Float64,
    event_date  Date,
    event_time  DateTime,
    name        String,
    bridge      String,
    seq         UInt64,
    received_at Float64,
    body        String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (cluster, uuid, type, hostname, pid, clock, timestamp)
-- down
DROP TABLE IF EXISTS {db}.events
