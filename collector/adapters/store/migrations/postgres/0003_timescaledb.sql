-- requires: timescaledb
-- Applied only where the TimescaleDB extension is available (the docker-compose stack);
-- on plain PostgreSQL it stays pending as optional and `collector db status` says so.
-- Compression and retention policies are set from the config by the collector after
-- migrating (storage.timescaledb), not here, so they can change without a migration.
CREATE EXTENSION IF NOT EXISTS timescaledb;

SELECT create_hypertable('measurements', by_range('time', INTERVAL '7 days'),
                         migrate_data => true);
-- samples stay a plain table: they are read by run, never by time range.

ALTER TABLE measurements SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'series_id, metric',
    timescaledb.compress_orderby = 'time DESC'
);

DROP VIEW measurements_hourly;
DROP VIEW measurements_daily;

CREATE MATERIALIZED VIEW measurements_hourly WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, series_id, metric,
           avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS n
    FROM measurements GROUP BY 1, 2, 3
    WITH NO DATA;
CREATE MATERIALIZED VIEW measurements_daily WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 day', time) AS bucket, series_id, metric,
           avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS n
    FROM measurements GROUP BY 1, 2, 3
    WITH NO DATA;

SELECT add_continuous_aggregate_policy('measurements_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');
SELECT add_continuous_aggregate_policy('measurements_daily',
    start_offset => INTERVAL '30 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '6 hours');

GRANT SELECT ON measurements_hourly, measurements_daily TO collector_readonly;
