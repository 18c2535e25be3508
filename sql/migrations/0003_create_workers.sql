-- The latest record of every Celery worker per (cluster, hostname); read it with FINAL.
-- version = milliseconds of the newest fact the record rests on (an event, or the liveness check
-- that found heartbeats missing), so a later judgement replaces an earlier one.
-- up
CREATE TABLE IF NOT EXISTS {db}.workers
(
    cluster        String,
    hostname       String,
    state          String,
    offline_reason Nullable(String),
    pid            Nullable(UInt32),
    freq           Nullable(Float64),
    active         Nullable(UInt32),
    processed      Nullable(UInt64),
    loadavg        Array(Float64),
    sw_ident       Nullable(String),
    sw_ver         Nullable(String),
    sw_sys         Nullable(String),
    online_at      Nullable(Float64),
    heartbeat_at   Nullable(Float64),
    offline_at     Nullable(Float64),
    expires_at     Nullable(Float64),
    updated_at     Float64,
    version        UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (cluster, hostname)
-- down
DROP TABLE IF EXISTS {db}.workers
