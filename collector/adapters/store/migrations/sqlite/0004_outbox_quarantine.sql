-- Outbox quarantine: a run PostgreSQL refuses (a value out of a column's range, a document
-- that no longer validates) is set aside, kept here with its reason, so the runs behind it
-- are still forwarded. `collector db retry-quarantined` (or the next collector version, on
-- its first sync) puts it back in line. quarantined_by is the collector version that set
-- it aside.
ALTER TABLE outbox ADD COLUMN quarantined_at TEXT;
ALTER TABLE outbox ADD COLUMN quarantined_by TEXT;
DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox (seq)
    WHERE delivered_at IS NULL AND quarantined_at IS NULL;
CREATE INDEX outbox_quarantined ON outbox (seq) WHERE quarantined_at IS NOT NULL;
-- Retention: delivered documents older than storage.outbox_retention_days are pruned.
CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
