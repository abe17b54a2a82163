-- The series vocabulary (collector/domain/series.py): `origin` is the tool an imported
-- series was measured by (`collector import`: optimum-benchmark, vllm-bench-serve, ...), ''
-- for the collector's own. Existing series are all the collector's own: '' is their value.
ALTER TABLE series ADD COLUMN origin text NOT NULL DEFAULT '';
