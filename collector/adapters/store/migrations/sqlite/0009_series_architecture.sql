-- The series vocabulary (collector/domain/series.py): `architecture` is the model class (known
-- for synthetic models), `model` the model's identity (for a synthetic model its
-- architecture and a digest of its config: the same change as PostgreSQL's 0010). Existing
-- synthetic series get their architecture from their identity; their model label is
-- rewritten by their next run (series labels follow the latest run from now on).
ALTER TABLE series ADD COLUMN architecture TEXT NOT NULL DEFAULT '';
UPDATE series SET architecture = coalesce(json_extract(identity, '$.model.architecture'), '')
    WHERE source = 'synthetic';
