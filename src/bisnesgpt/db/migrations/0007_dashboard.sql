-- 0007_dashboard: what the operator dashboard reads often, made cheap.
--
-- The dashboard's metrics rollup counts, once a minute, the outbound messages sent and
-- failed in the last complete minute(s) (sent by engine, failures by error code,
-- accept->sent latency) and stores them in process_metrics; its charts read
-- process_metrics by metric name over the last hour or day.
CREATE INDEX idx_messages_sent_at ON messages(sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX idx_messages_failed_at ON messages(failed_at) WHERE failed_at IS NOT NULL;
CREATE INDEX idx_process_metrics_metric_time ON process_metrics(metric_name, timestamp DESC);
-- Failures an operator re-queued keep their error in the re-queue's history row (source
-- 'operator'); the rollup finds those rows by time.
CREATE INDEX idx_message_status_history_operator ON message_status_history(created_at)
    WHERE source = 'operator';
