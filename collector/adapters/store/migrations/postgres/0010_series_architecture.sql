-- The series vocabulary (collector/domain/series.py): `architecture` is the model class (known
-- for synthetic models), `model` the model's identity (for a synthetic model its
-- architecture and a digest of its config). Existing synthetic series get their
-- architecture from their identity; their model label is rewritten by their next run
-- (series labels follow the latest run from now on).
ALTER TABLE series ADD COLUMN architecture text NOT NULL DEFAULT '';
UPDATE series SET architecture = coalesce(identity -> 'model' ->> 'architecture', '')
    WHERE source = 'synthetic';
