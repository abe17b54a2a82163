-- requires: timescaledb
-- TimescaleDB, second pass (0003 is left as applied: editing it would make every database
-- that has it refuse this collector).
--
-- Compression orders by run_id too: (series_id, metric) segments can hold several rows of
-- one time (two runs that finished in the same microsecond), and TimescaleDB warns when the
-- order by does not cover the unique key.
ALTER TABLE measurements SET (timescaledb.compress_orderby = 'time DESC, run_id');

-- The hourly and daily aggregates answer with what is materialised plus the raw rows not
-- yet materialised (real-time aggregation), so the current hour and day show, and their
-- refresh policies start at the beginning of time, so history older than a fixed window
-- (existing data at upgrade, an outbox backlog, backdated runs) is materialised too. The
-- first full refresh cannot run inside this transaction: the collector runs it after
-- migrating (`collector db migrate`, or a start-up migration).
ALTER MATERIALIZED VIEW measurements_hourly SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW measurements_daily SET (timescaledb.materialized_only = false);

SELECT remove_continuous_aggregate_policy('measurements_hourly');
SELECT remove_continuous_aggregate_policy('measurements_daily');
SELECT add_continuous_aggregate_policy('measurements_hourly',
    start_offset => NULL, end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');
SELECT add_continuous_aggregate_policy('measurements_daily',
    start_offset => NULL, end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '6 hours');
