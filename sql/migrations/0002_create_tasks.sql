-- The latest record of every task per (cluster, uuid); read it with FINAL (or argMax by version).
-- version = events_count: the engine's state only grows, so a later record of a task always
-- merged at least as many distinct events; re-inserting an old record never wins.
-- Timestamps are epoch seconds (Float64): 18.16 has no DateTime64 and queue waits are sub-second.
-- up
CREATE TABLE IF NOT EXISTS {db}.tasks
(
    cluster           String,
    uuid              String,
    name              String,
    state             String,
    retries           UInt32,
    revocation_reason Nullable(String),
    signum            Nullable(Int32),
    rejection         Nullable(String),
    requeues          UInt32,
    exception         Nullable(String),
    exception_type    Nullable(String),
    traceback         Nullable(String),
    result            Nullable(String),
    runtime           Nullable(Float64),
    args              Nullable(String),
    kwargs            Nullable(String),
    eta               Nullable(String),
    expires           Nullable(String),
    root_id           Nullable(String),
    parent_id         Nullable(String),
    queue             Nullable(String),
    exchange          Nullable(String),
    routing_key       Nullable(String),
    worker            Nullable(String),
    client            Nullable(String),
    queued_at         Nullable(Float64),
    received_at       Nullable(Float64),
    started_at        Nullable(Float64),
    succeeded_at      Nullable(Float64),
    failed_at         Nullable(Float64),
    retried_at        Nullable(Float64),
    rejected_at       Nullable(Float64),
    revoked_at        Nullable(Float64),
    first_seen_at     Float64,
    last_seen_at      Float64,
    first_seen        DateTime,
    events_count      UInt32,
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (cluster, uuid)
-- down
DROP TABLE IF EXISTS {db}.tasks
