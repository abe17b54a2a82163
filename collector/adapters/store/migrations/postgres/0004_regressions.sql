-- Detected level changes per series and metric, with their state, and the baselines users
-- set to accept a change as expected. Written by the regression detector
-- (collector/regress/); read by the exporter, the CLI and Grafana.
--
-- status: suspected (seen in a few runs, not paging), open (confirmed: pages),
-- acknowledged (a person has seen it; still resolves by itself), resolved (the level came
-- back), expected (accepted as the new baseline), dismissed (a suspected excursion that
-- reverted before it was confirmed).
CREATE TABLE regressions (
    regression_id    text PRIMARY KEY,
    series_id        text NOT NULL REFERENCES series (series_id),
    metric           text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('regression', 'improvement')),
    status           text NOT NULL CHECK (status IN ('suspected', 'open', 'acknowledged',
                                                     'resolved', 'expected', 'dismissed')),
    start_run_id     uuid NOT NULL,
    start_time       timestamptz NOT NULL,
    last_good_run_id uuid,
    last_good_time   timestamptz,
    detected_run_id  uuid NOT NULL,
    detected_at      timestamptz NOT NULL,
    confirmed_at     timestamptz,
    before_value     double precision NOT NULL,
    after_value      double precision NOT NULL,
    relative_change  double precision NOT NULL,
    statistic        double precision NOT NULL,
    p_value          double precision,
    method           text NOT NULL,
    environment_diff jsonb NOT NULL DEFAULT '{}'::jsonb,
    attribution      text NOT NULL DEFAULT '',
    resolved_at      timestamptz,
    resolved_run_id  uuid,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    note             text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX regressions_series_metric ON regressions (series_id, metric, start_time DESC);
CREATE INDEX regressions_active ON regressions (status)
    WHERE status IN ('suspected', 'open', 'acknowledged');

CREATE TABLE baselines (
    series_id  text NOT NULL REFERENCES series (series_id),
    metric     text NOT NULL,
    since      timestamptz NOT NULL,
    run_id     uuid,
    reason     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (series_id, metric, since)
);

-- Grafana annotations: one row per detected change, from its first run to its resolution
-- (or now). Columns follow Grafana's SQL annotation convention (time, timeEnd, text, tags).
CREATE VIEW regression_annotations AS
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
           concat_ws(',', r.kind, r.status, r.metric, s.model) AS tags
    FROM regressions r JOIN series s USING (series_id);

-- The full spec of each result (measurement knobs included), hashed, so attribution can
-- tell "the benchmark's configuration changed" from "the software changed".
ALTER TABLE results ADD COLUMN spec_hash text;
