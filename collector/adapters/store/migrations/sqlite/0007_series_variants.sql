-- Quantization and attention implementation as series labels (the same change as
-- PostgreSQL's 0008): two variants of one model are told apart on the dashboards and in
-- /metrics, not by series_id alone. Existing series get them from their identity, where
-- those dimensions appear only when set.
ALTER TABLE series ADD COLUMN quantization TEXT NOT NULL DEFAULT 'none';
ALTER TABLE series ADD COLUMN attn_implementation TEXT NOT NULL DEFAULT 'auto';
UPDATE series SET
    quantization = coalesce(json_extract(identity, '$.quantization'), 'none'),
    attn_implementation = coalesce(json_extract(identity, '$.attn_implementation'), 'auto');
