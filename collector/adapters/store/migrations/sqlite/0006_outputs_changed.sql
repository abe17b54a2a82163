-- Outputs changed: the same change as PostgreSQL's 0007 (see there). SQLite cannot change a
-- CHECK constraint in place, so the regressions table is rebuilt to admit the new kind.
CREATE TABLE regressions_new (
    regression_id    TEXT PRIMARY KEY,
    series_id        TEXT NOT NULL REFERENCES series (series_id),
    metric           TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('regression', 'improvement', 'host_drift',
                                                   'outputs_changed')),
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
    confirmation, updated_at)
SELECT regression_id, series_id, metric, kind, status, start_run_id,
    start_time, last_good_run_id, last_good_time, detected_run_id, detected_at, confirmed_at,
    before_value, after_value, relative_change, statistic, p_value, method, environment_diff,
    attribution, resolved_at, resolved_run_id, acknowledged_at, acknowledged_by, note,
    confirmation, updated_at FROM regressions;
DROP TABLE regressions;
ALTER TABLE regressions_new RENAME TO regressions;
CREATE INDEX regressions_series_metric ON regressions (series_id, metric, start_time);
CREATE INDEX regressions_status ON regressions (status);
