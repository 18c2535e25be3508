-- title: Queue lengths per minute
-- question: Is a backlog building? Messages waiting in each broker queue per minute (peak and last sample), with the consumers and workers seen on it. role = task (a Celery task queue) or bridge (this product's own event queue)
-- params: cluster ('' = all clusters), since (epoch seconds; 0 = all time); name does not apply (queues are not task names)
SELECT
    toStartOfMinute(sampled_time) AS minute,
    cluster,
    queue,
    role,
    max(messages) AS messages_max,
    argMax(messages, sampled_at) AS messages_last,
    min(consumers) AS consumers_min,
    argMax(workers, sampled_at) AS workers_last
FROM {db}.queue_lengths FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND sampled_at >= %(since)s
GROUP BY minute, cluster, queue, role
ORDER BY minute, cluster, queue
