-- Queue lengths over time: one row per sample of a broker queue (bridge/queues.py, topic
-- celery.queue-lengths.v1). Re-inserted samples (at-least-once) share the ORDER BY key and fold on
-- merge; queries read them with FINAL or argMax. Partitioned by month like events, so
-- `streams retention` drops old months (18.16 has no TTL).
-- role: 'task' (a Celery task queue) or 'bridge' (this product's own event queue).
-- up
CREATE TABLE IF NOT EXISTS {db}.queue_lengths
(
    cluster      String,
    queue        String,
    role         String,
    transport    String,
    present      UInt8,
    messages     UInt64,
    consumers    Nullable(UInt32),
    workers      Nullable(UInt32),
    processes    Nullable(UInt32),
    sampled_at   Float64,
    sampled_time DateTime,
    sampled_date Date,
    bridge       String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(sampled_date)
ORDER BY (cluster, queue, sampled_at)
-- down
DROP TABLE IF EXISTS {db}.queue_lengths
