-- Issue 12 fields. tasks: cancels (task-cancelled events: deliveries cancelled on a broker
-- connection loss), orphaned_at (monitor clock: the task's worker was declared lost while it was
-- RECEIVED/STARTED), seen_at (monitor clock: newest receive time of its events). workers: seen_at
-- (newest receive time of anything from the worker, task events included), judged_at (the
-- stream's watermark its liveness was judged at), skew (worker clock minus monitor clock, s).
-- The sink's versions change meaning with it: tasks 2 x events_count + 1 when orphaned (a loss
-- tags a task without a new event), workers milliseconds of max(seen_at, judged_at) -- the
-- monitor's clock only, so a worker whose clock is behind cannot lose its newer rows.
-- up
ALTER TABLE {db}.tasks ADD COLUMN cancels UInt32 DEFAULT 0 AFTER requeues;
ALTER TABLE {db}.tasks ADD COLUMN orphaned_at Nullable(Float64) AFTER client;
ALTER TABLE {db}.tasks ADD COLUMN seen_at Nullable(Float64) AFTER last_seen_at;
ALTER TABLE {db}.workers ADD COLUMN seen_at Nullable(Float64) AFTER offline_at;
ALTER TABLE {db}.workers ADD COLUMN judged_at Nullable(Float64) AFTER expires_at;
ALTER TABLE {db}.workers ADD COLUMN skew Nullable(Float64) AFTER judged_at
-- down
ALTER TABLE {db}.workers DROP COLUMN skew;
ALTER TABLE {db}.workers DROP COLUMN judged_at;
ALTER TABLE {db}.workers DROP COLUMN seen_at;
ALTER TABLE {db}.tasks DROP COLUMN seen_at;
ALTER TABLE {db}.tasks DROP COLUMN orphaned_at;
ALTER TABLE {db}.tasks DROP COLUMN cancels
