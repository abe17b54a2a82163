-- Run journal: a suite's run as it happens, so a collector that is killed (SIGKILL, the
-- OOM killer, a power cut) loses nothing it had finished. A row in run_journal is a run in
-- progress, owned by one live collector process (`owner`: the token of the lock file it
-- holds for its life), and each benchmark start and each finished repetition is an entry. At the
-- end of the suite the run is stored whole and its journal deleted, and a journal whose owner
-- is gone is turned into an aborted run at the next start (collector.service).
CREATE TABLE run_journal (
    run_id      TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    header      TEXT NOT NULL,    -- JSON: suite, host, started_at, version, purpose, environment
    started_at  TEXT NOT NULL
);
CREATE TABLE run_journal_entries (
    run_id      TEXT NOT NULL REFERENCES run_journal (run_id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    position    INTEGER NOT NULL, -- the benchmark's place in its suite
    kind        TEXT NOT NULL CHECK (kind IN ('started', 'finished')),
    document    TEXT NOT NULL,    -- started: the spec, finished: the BenchmarkResult
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
