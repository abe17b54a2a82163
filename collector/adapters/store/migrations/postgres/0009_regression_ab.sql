-- The automatic A/B of a confirmed regression whose attribution names package versions
-- (collector/runs.py): its summary (metric, ratio, low, high, verdict, text, the pins a and
-- b, rounds, when, elapsed_s), or {"failure": ...} when it could not run. NULL: none ran.
ALTER TABLE regressions ADD COLUMN ab jsonb;

-- Annotations carry the A/B line after the attribution (the whole definition again, as
-- CREATE OR REPLACE needs; its columns unchanged, so the view keeps its grants). The line is
-- collector.history.ab_line's: the failure, or the summary's text.
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
           s.quantization, s.attn_implementation
    FROM regressions r JOIN series s USING (series_id);
