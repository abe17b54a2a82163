-- Signal on noisy hosts: repetitions, confirmation runs, host drift and the detector's
-- learnt noise.
--
-- runs.purpose / results.purpose: 'scheduled' (a point of its series) or 'confirmation'
-- (repetitions run at once to confirm or dismiss a suspected change; their values go to
-- confirmation_measurements, never to measurements, so no trend, exporter value or
-- detector replay counts them as scheduled points).
ALTER TABLE runs ADD COLUMN purpose text NOT NULL DEFAULT 'scheduled'
    CHECK (purpose IN ('scheduled', 'confirmation'));
ALTER TABLE results ADD COLUMN purpose text NOT NULL DEFAULT 'scheduled'
    CHECK (purpose IN ('scheduled', 'confirmation'));
-- Every repetition's summary (metrics, measurement, noise, where its samples lie).
ALTER TABLE results ADD COLUMN repetitions jsonb;

CREATE TABLE confirmation_measurements (
    time      timestamptz NOT NULL,
    run_id    uuid NOT NULL,
    series_id text NOT NULL,
    metric    text NOT NULL,
    value     double precision NOT NULL,
    unit      text NOT NULL,
    PRIMARY KEY (series_id, metric, time, run_id)
);

-- host_drift: a step with no software, configuration or model change behind it (a
-- warning, not the regression page). confirmation: the evidence of confirmation runs.
ALTER TABLE regressions DROP CONSTRAINT regressions_kind_check;
ALTER TABLE regressions ADD CONSTRAINT regressions_kind_check
    CHECK (kind IN ('regression', 'improvement', 'host_drift'));
ALTER TABLE regressions ADD COLUMN confirmation jsonb;

-- What the detector learnt of each series' metric at its latest scan: the noise between
-- runs (relative) and the smallest change it can page on at its false-alarm rate.
CREATE TABLE detection_state (
    series_id  text NOT NULL REFERENCES series (series_id),
    metric     text NOT NULL,
    runs       integer NOT NULL,
    noise      double precision NOT NULL,
    min_detectable_effect double precision NOT NULL,
    confirm_min_detectable_effect double precision,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (series_id, metric)
);
