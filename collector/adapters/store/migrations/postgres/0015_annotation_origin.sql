-- Grafana's annotations filter by every series dimension (as 0011 and 0013): the series'
-- `origin` (0014) added last (CREATE OR REPLACE keeps the view's grants).
CREATE OR REPLACE VIEW regression_annotations AS
    SELECT r.start_time AS time,
           coalesce(r.resolved_at, now()) AS "timeEnd",
           r.series_id, r.metric, r.kind, r.status, r.regression_id,
           s.host, s.model, s.task, s.backend, s.device, s.dtype, s.batch_size,
           s.sequence_length,
           format('%s %s %s%s%% (%s → %s)%s%s', s.name, r.metric,
                  CASE WHEN r.relative_change >= 0 THEN '+' ELSE '' END,
                  round((r.relative_change * 100)::numeric, 1),
                  r.before_value, r.after_value,
                  CASE WHEN r.attribution <> '' THEN ': ' || r.attribution ELSE '' END,
                  coalesce('; ' || coalesce('A/B failed: ' || (r.ab ->> 'failure'),
                                            r.ab ->> 'text'), '')) AS text,
           concat_ws(',', r.kind, r.status, r.metric, s.model) AS tags,
           s.quantization, s.attn_implementation, s.name, s.architecture,
           s.suite, s.new_tokens, s.load, s.origin
    FROM regressions r JOIN series s USING (series_id);
