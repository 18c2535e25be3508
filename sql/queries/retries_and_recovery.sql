-- title: Retries and recovery by task name
-- question: How often do tasks retry, and how often does a retry chain end well? retried = tasks with retries > 0 or in RETRY (its retry ended an attempt before the next one carried retries = 1); recovery rate = RECOVERED / tasks that retried; waiting_to_retry = tasks waiting for their next attempt now (sql/fragments/waiting_to_retry.sql)
-- params: cluster ('' = all clusters), name ('' = all task names), since (epoch seconds; 0 = all time)
SELECT
    name,
    countIf(retries > 0 OR state = 'RETRY') AS retried,
    countIf(state = 'RECOVERED') AS recovered,
    countIf(state = 'CRITICAL') AS critical,
    countIf({waiting_to_retry}) AS waiting_to_retry,
    max(retries) AS max_retries,
    round(countIf(state = 'RECOVERED') / countIf(retries > 0 OR state = 'RETRY'), 4) AS recovery_rate
FROM {db}.tasks FINAL
WHERE (%(cluster)s = '' OR cluster = %(cluster)s) AND (%(name)s = '' OR name = %(name)s) AND first_seen_at >= %(since)s
GROUP BY name
HAVING retried > 0
ORDER BY retried DESC, name
