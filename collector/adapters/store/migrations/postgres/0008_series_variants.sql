-- Quantization and attention implementation as series labels: two variants of one model
-- are told apart on the dashboards and in /metrics, not by series_id alone. Existing series
-- get them from their identity, where those dimensions appear only when set.
ALTER TABLE series ADD COLUMN quantization text NOT NULL DEFAULT 'none';
ALTER TABLE series ADD COLUMN attn_implementation text NOT NULL DEFAULT 'auto';
UPDATE series SET
    quantization = coalesce(identity ->> 'quantization', 'none'),
    attn_implementation = coalesce(identity ->> 'attn_implementation', 'auto');

-- Grafana's annotations filter by the same variables as the panels (columns added last:
-- CREATE OR REPLACE keeps the view's grants).
CREATE OR REPLACE VIEW regression_annotations AS
    SELECT r.start_time AS time,
           coalesce(r.resolved_at, now()) AS "timeEnd",
           r.series_id, r.metric, r.kind, r.status, r.regression_id,
           s.host, s.model, s.task, s.backend, s.device, s.dtype, s.batch_size,
           s.sequence_length,
           format('%s %s %s%s%% (%s → %s)%s', s.name, r.metric,
                  CASE WHEN r.relative_change >= 0 THEN '+' ELSE '' END,
                  round((r.relative_change * 100)::numeric, 1),
                  r.before_value, r.after_value,
                  CASE WHEN r.attribution <> '' THEN ': ' || r.attribution ELSE '' END) AS text,
           concat_ws(',', r.kind, r.status, r.metric, s.model) AS tags,
           s.quantization, s.attn_implementation
    FROM regressions r JOIN series s USING (series_id);
