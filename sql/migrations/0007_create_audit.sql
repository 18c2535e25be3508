-- Task control's audit trail (celery-monitor control -> topic celery.audit.v1 -> the sink): one
-- row per request (uuid '') and one per selected task, phase 'requested' then 'done' (version 0,
-- 1); read with FINAL. Not in `streams retention`'s partitions: an audit trail is kept.
-- up
CREATE TABLE IF NOT EXISTS {db}.audit
(
    request_id     String,
    cluster        String,
    uuid           String,
    at             Float64,
    at_date        Date,
    finished_at    Nullable(Float64),
    user           String,
    role           String,
    via            String,
    action         String,
    dry_run        UInt8,
    selection      String,
    phase          String,
    name           String,
    state          String,
    eligible       UInt8,
    reason         String,
    outcome        String,
    detail         String,
    new_uuid       String,
    selected       UInt32,
    eligible_count UInt32,
    done_count     UInt32,
    control        String,
    version        UInt8
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(at_date)
ORDER BY (request_id, cluster, uuid)
-- down
DROP TABLE IF EXISTS {db}.audit
