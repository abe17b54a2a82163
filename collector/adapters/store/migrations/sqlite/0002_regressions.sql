-- Detected level changes and user baselines: the same tables as PostgreSQL's 0004
-- (times as ISO 8601 UTC text, JSON as text).
CREATE TABLE regressions (
    regression_id    TEXT PRIMARY KEY,
    series_id        TEXT NOT NULL REFERENCES series (series_id),
    metric           TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('regression', 'improvement')),
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
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX regressions_series_metric ON regressions (series_id, metric, start_time);
CREATE INDEX regressions_status ON regressions (status);

CREATE TABLE baselines (
    series_id  TEXT NOT NULL REFERENCES series (series_id),
    metric     TEXT NOT NULL,
    since      TEXT NOT NULL,
    run_id     TEXT,
    reason     TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (series_id, metric, since)
);

-- The full spec of each result (measurement knobs included), hashed, so attribution can
-- tell "the benchmark's configuration changed" from "the software changed".
ALTER TABLE results ADD COLUMN spec_hash TEXT;

-- A counter bumped by every regression or baseline write: the exporter re-renders when
-- it (or the outbox) changes.
CREATE TABLE store_state (version INTEGER NOT NULL);
INSERT INTO store_state (version) VALUES (0);
