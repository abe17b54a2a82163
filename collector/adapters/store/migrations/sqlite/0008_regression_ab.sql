-- The automatic A/B of a confirmed regression (the same change as PostgreSQL's 0009, see
-- there): its summary as JSON text, or {"failure": ...}; NULL when none ran. A nullable
-- column without a constraint is added in place: no rebuild needed.
ALTER TABLE regressions ADD COLUMN ab TEXT;
