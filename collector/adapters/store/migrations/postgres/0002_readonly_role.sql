-- A group role for dashboards: SELECT and nothing else, on today's tables and tomorrow's.
-- Log-in roles join it with `collector db create-reader NAME` (password from the
-- environment), so no password ever lives in a migration.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'collector_readonly') THEN
        CREATE ROLE collector_readonly NOLOGIN;
    END IF;
END
$$;
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO collector_readonly', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO collector_readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO collector_readonly;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO collector_readonly;
