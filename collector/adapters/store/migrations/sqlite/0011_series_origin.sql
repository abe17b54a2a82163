-- The series vocabulary (collector/domain/series.py): `origin` is the tool an imported
-- series was measured by (`collector import`: optimum-benchmark, vllm-bench-serve, ...), ''
-- for the collector's own. Existing series are all the collector's own: '' is their value
-- (the same change as PostgreSQL's 0014).
ALTER TABLE series ADD COLUMN origin TEXT NOT NULL DEFAULT '';
