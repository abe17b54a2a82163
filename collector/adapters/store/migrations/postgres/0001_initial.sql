-- Runs, series, per-benchmark results, measurements, raw samples and failures.
-- Room is left for regressions and annotations (a later migration adds them).

CREATE TABLE runs (
    run_id            uuid PRIMARY KEY,
    suite             text NOT NULL,
    host              text NOT NULL,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL,
    status            text NOT NULL CHECK (status IN ('ok', 'partial', 'failed', 'aborted')),
    collector_version text NOT NULL,
    environment       jsonb,
    stored_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_host_started ON runs (host, started_at DESC);
CREATE INDEX runs_suite_started ON runs (suite, started_at DESC);

CREATE TABLE series (
    series_id       text PRIMARY KEY,
    host            text NOT NULL,
    suite           text NOT NULL,
    name            text NOT NULL,
    model           text NOT NULL,
    source          text NOT NULL,
    revision        text,
    task            text NOT NULL,
    backend         text NOT NULL,
    device          text NOT NULL,
    dtype           text NOT NULL,
    batch_size      integer NOT NULL,
    sequence_length integer NOT NULL,
    new_tokens      integer NOT NULL,
    spec            jsonb NOT NULL,
    identity        jsonb NOT NULL,
    first_seen      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX series_model ON series (model, task);

CREATE TABLE results (
    run_id        uuid NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    series_id     text NOT NULL REFERENCES series (series_id),
    status        text NOT NULL CHECK (status IN ('ok', 'failed')),
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    resolved_task text,
    measurement   jsonb,
    noise         jsonb,
    environment   jsonb NOT NULL,
    PRIMARY KEY (run_id, series_id)
);
CREATE INDEX results_series_finished ON results (series_id, finished_at DESC);

-- No foreign keys here: TimescaleDB hypertables cannot be referenced, and the writer keeps
-- them consistent in one transaction. The primary key includes time, as hypertables need,
-- and carries the value so that trend queries are index-only scans (a year-long trend of
-- one series went from p95 119 ms to 32 ms over 7M rows: benchmarks/store_queries.py).
CREATE TABLE measurements (
    time      timestamptz NOT NULL,
    run_id    uuid NOT NULL,
    series_id text NOT NULL,
    metric    text NOT NULL,
    value     double precision NOT NULL,
    unit      text NOT NULL,
    PRIMARY KEY (series_id, metric, time, run_id) INCLUDE (value)
);
CREATE INDEX measurements_metric_time ON measurements (metric, time DESC);
CREATE INDEX measurements_run ON measurements (run_id);

CREATE TABLE samples (
    run_id    uuid NOT NULL,
    series_id text NOT NULL,
    metric    text NOT NULL,
    idx       integer NOT NULL,
    value     double precision NOT NULL,
    PRIMARY KEY (run_id, series_id, metric, idx)
);

CREATE TABLE failures (
    run_id         uuid NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    series_id      text NOT NULL REFERENCES series (series_id),
    time           timestamptz NOT NULL,
    kind           text NOT NULL,
    message        text NOT NULL,
    exception_type text,
    traceback_tail text,
    exit_code      integer,
    signal         text,
    PRIMARY KEY (run_id, series_id)
);
CREATE INDEX failures_time ON failures (time DESC);

-- Long-range dashboard queries read these. On plain PostgreSQL they are views over the raw
-- table; the TimescaleDB migration replaces them with continuous aggregates of the same
-- name and columns, so dashboards need no change.
CREATE VIEW measurements_hourly AS
    SELECT date_trunc('hour', time) AS bucket, series_id, metric,
           avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS n
    FROM measurements GROUP BY 1, 2, 3;
CREATE VIEW measurements_daily AS
    SELECT date_trunc('day', time) AS bucket, series_id, metric,
           avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS n
    FROM measurements GROUP BY 1, 2, 3;
