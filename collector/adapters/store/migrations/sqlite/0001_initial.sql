-- The embedded local store: the same tables as PostgreSQL (times as ISO 8601 UTC text,
-- JSON as text), plus the outbox of runs waiting to be forwarded.

CREATE TABLE runs (
    run_id            TEXT PRIMARY KEY,
    suite             TEXT NOT NULL,
    host              TEXT NOT NULL,
    started_at        TEXT NOT NULL,
    finished_at       TEXT NOT NULL,
    status            TEXT NOT NULL,
    collector_version TEXT NOT NULL,
    environment       TEXT,
    stored_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE series (
    series_id       TEXT PRIMARY KEY,
    host            TEXT NOT NULL,
    suite           TEXT NOT NULL,
    name            TEXT NOT NULL,
    model           TEXT NOT NULL,
    source          TEXT NOT NULL,
    revision        TEXT,
    task            TEXT NOT NULL,
    backend         TEXT NOT NULL,
    device          TEXT NOT NULL,
    dtype           TEXT NOT NULL,
    batch_size      INTEGER NOT NULL,
    sequence_length INTEGER NOT NULL,
    new_tokens      INTEGER NOT NULL,
    spec            TEXT NOT NULL,
    identity        TEXT NOT NULL,
    first_seen      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE results (
    run_id        TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    series_id     TEXT NOT NULL REFERENCES series (series_id),
    status        TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT NOT NULL,
    resolved_task TEXT,
    measurement   TEXT,
    noise         TEXT,
    environment   TEXT NOT NULL,
    PRIMARY KEY (run_id, series_id)
);

CREATE TABLE measurements (
    time      TEXT NOT NULL,
    run_id    TEXT NOT NULL,
    series_id TEXT NOT NULL,
    metric    TEXT NOT NULL,
    value     REAL NOT NULL,
    unit      TEXT NOT NULL,
    PRIMARY KEY (series_id, metric, time, run_id)
);
CREATE INDEX measurements_metric_time ON measurements (metric, time);

CREATE TABLE samples (
    run_id    TEXT NOT NULL,
    series_id TEXT NOT NULL,
    metric    TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    value     REAL NOT NULL,
    PRIMARY KEY (run_id, series_id, metric, idx)
);

CREATE TABLE failures (
    run_id         TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    series_id      TEXT NOT NULL REFERENCES series (series_id),
    time           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    message        TEXT NOT NULL,
    exception_type TEXT,
    traceback_tail TEXT,
    exit_code      INTEGER,
    signal         TEXT,
    PRIMARY KEY (run_id, series_id)
);

-- Every run is kept here as its JSON document until PostgreSQL has it: replayed in seq
-- order, exactly once (the remote write is idempotent by run id).
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT NOT NULL UNIQUE REFERENCES runs (run_id),
    document     TEXT NOT NULL,
    delivered_at TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE delivered_at IS NULL;
