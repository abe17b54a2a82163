-- Signal on noisy hosts: the same changes as PostgreSQL's 0005 (see there). SQLite cannot
-- change a CHECK constraint in place, so the regressions table is rebuilt to admit the
-- host_drift kind and the confirmation column.
ALTER TABLE runs ADD COLUMN purpose TEXT NOT NULL DEFAULT 'scheduled'
    CHECK (purpose IN ('scheduled', 'confirmation'));
ALTER TABLE results ADD COLUMN purpose TEXT NOT NULL DEFAULT 'scheduled'
    CHECK (purpose IN ('scheduled', 'confirmation'));
ALTER TABLE results ADD COLUMN repetitions TEXT;

CREATE TABLE confirmation_measurements (
    time      TEXT NOT NULL,
    run_id    TEXT NOT NULL,
    series_id TEXT NOT NULL,
    metric    TEXT NOT NULL,
    value     REAL NOT NULL,
    unit      TEXT NOT NULL,
    PRIMARY KEY (series_id, metric, time, run_id)
);

CREATE TABLE regressions_new (
    regression_id    TEXT PRIMARY KEY,
    series_id        TEXT NOT NULL REFERENCES series (series_id),
    metric           TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('regression', 'improvement', 'host_drift')),
    status           TEXT NOT NULL CHECK (status IN ('suspected', 'open', 'acknowledged',
                                                     'resolved', 'expected', 'dismissed')),
    start_run_id     TEXT NOT NULL,
    start_time       TEXT NOT NULL,
    last_good_run_id TEXT,
    last_good_time   TEXT,
    detected_run_id  TEXT NOT NULL,
    detected_at      TEXT NOT NULL,
    confirmed_at     TEXT,
    before_value     REAL NOT NULL,
    after_value      REAL NOT NULL,
    relative_change  REAL NOT NULL,
    statistic        REAL NOT NULL,
    p_value          REAL,
    method           TEXT NOT NULL,
    environment_diff TEXT NOT NULL DEFAULT '{}',
    attribution      TEXT NOT NULL DEFAULT '',
    resolved_at      TEXT,
    resolved_run_id  TEXT,
    acknowledged_at  TEXT,
    acknowledged_by  TEXT,
    note             TEXT,
    confirmation     TEXT,
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO regressions_new (regression_id, series_id, metric, kind, status, start_run_id,
    start_time, last_good_run_id, last_good_time, detected_run_id, detected_at, confirmed_at,
    before_value, after_value, relative_change, statistic, p_value, method, environment_diff,
    attribution, resolved_at, resolved_run_id, acknowledged_at, acknowledged_by, note,
    updated_at)
SELECT regression_id, series_id, metric, kind, status, start_run_id,
    start_time, last_good_run_id, last_good_time, detected_run_id, detected_at, confirmed_at,
    before_value, after_value, relative_change, statistic, p_value, method, environment_diff,
    attribution, resolved_at, resolved_run_id, acknowledged_at, acknowledged_by, note,
    updated_at FROM regressions;
DROP TABLE regressions;
ALTER TABLE regressions_new RENAME TO regressions;
CREATE INDEX regressions_series_metric ON regressions (series_id, metric, start_time);
CREATE INDEX regressions_status ON regressions (status);

CREATE TABLE detection_state (
    series_id  TEXT NOT NULL REFERENCES series (series_id),
    metric     TEXT NOT NULL,
    runs       INTEGER NOT NULL,
    noise      REAL NOT NULL,
    min_detectable_effect REAL NOT NULL,
    confirm_min_detectable_effect REAL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (series_id, metric)
);
