-- The series vocabulary (collector/domain/series.py): `load` is the load a benchmark runs
-- under (BenchmarkSpec.load: `cb 16 req` for continuous batching, the serving profile such
-- as `poisson 4/s`), '' for a benchmark of one call at a time. Existing series have neither
-- batching nor serving in their identity: '' is their value (the same change as
-- PostgreSQL's 0012).
ALTER TABLE series ADD COLUMN load TEXT NOT NULL DEFAULT '';
