"""Prometheus exposition computed at scrape time from the stored results.

A custom prometheus_client Collector: nothing lives in process memory between scrapes but
the rendered text, cached by the store's data version (Exposition), so a restarted
collector shows the same values at once. Registries are always passed in (never the
global one).

Naming follows Prometheus conventions: base units (seconds, bytes), `_total` for counters,
one family per quantity (percentiles as a `percentile` label: promtool reserves `quantile`
for summaries), and the series' dimensions as labels (collector.domain.series.SERIES_LABELS:
host, suite, benchmark, model, architecture, task, backend, ..., series_id). `host`
is a label taken from the stored results, so series keep their host behind a Pushgateway
or federation; cardinality is bounded by the configured benchmarks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from collector.analysis.reading import QUALITIES, quality_of
from collector.domain.catalogue import (
    BUILD_INFO,
    DETECTION_MDE,
    DETECTION_NOISE,
    FAILURES,
    LAST_RUN,
    LAST_SUCCESS,
    METRICS,
    NEXT_RUN,
    OTHER_CPU,
    OUTBOX_PENDING,
    OUTBOX_QUARANTINED,
    QUALITY,
    REGRESSION_AB,
    REGRESSION_CHANGE,
    REGRESSIONS_READABLE,
    REL_CI,
    RESULTS,
    RUN_DURATION,
    RUNS,
    SCHEDULE_INTERVAL,
    StateFamily,
)
from collector.domain.errors import StoreError
from collector.domain.history import (
    ACTIVE_STATUSES,
    LatestValue,
    SeriesActivity,
    SeriesConditions,
    Store,
    SuiteActivity,
)
from collector.domain.model import RunResult
from collector.domain.series import SERIES_LABELS, SeriesInfo, series_info

log = logging.getLogger("collector.exporter")

OPENMETRICS = "application/openmetrics-text"
_EOF = b"# EOF\n"
def _ts(value: datetime) -> float:
    return value.timestamp()


def _label_names(family: StateFamily) -> list[str]:
    return [*(SERIES_LABELS if family.series else ()), *family.labels]


def _gauge(family: StateFamily, value: float | None = None) -> GaugeMetricFamily:
    """One of the catalogue's state families (collector.domain.catalogue.STATE_FAMILIES)."""
    assert family.kind == "gauge"
    if value is not None:
        return GaugeMetricFamily(family.name, family.help, value=value)
    return GaugeMetricFamily(family.name, family.help, labels=_label_names(family))


def _counter(family: StateFamily) -> CounterMetricFamily:
    assert family.kind == "counter"
    return CounterMetricFamily(family.name, family.help, labels=_label_names(family))


def _labels(info: SeriesInfo) -> list[str]:
    return [str(getattr(info, name)) for name in SERIES_LABELS]


def benchmark_families(series: dict[str, SeriesInfo], latest: Iterable[LatestValue],
                       activity: Iterable[SeriesActivity],
                       suites: Iterable[SuiteActivity],
                       conditions: Iterable[SeriesConditions] = ()) -> Iterator[Metric]:
    """The benchmark families: every latest value in its catalogue family (metrics without
    one stay in the store), then the series' quality, and the series' and suites'
    activity."""
    families: dict[str, GaugeMetricFamily] = {}
    for value in latest:
        definition = METRICS.get(value.metric)
        info = series.get(value.series_id)
        if definition is None or definition.family is None or info is None:
            continue
        family = definition.family
        extra = [family.label] if family.label else []
        gauge = families.get(family.full_name)
        if gauge is None:
            gauge = families[family.full_name] = GaugeMetricFamily(
                family.full_name, family.help, labels=[*SERIES_LABELS, *extra])
        gauge.add_metric(_labels(info) + ([definition.label_value or ""] if extra else []),
                         value.value)
    yield from families.values()
    yield from _series_quality(series, conditions)
    yield from _series_activity(series, activity)
    yield from _suite_activity(suites)


def _series_quality(series: dict[str, SeriesInfo],
                    conditions: Iterable[SeriesConditions]) -> Iterator[Metric]:
    """Each series' latest scheduled success as collector.analysis.reading reads it: its
    quality (a state set), the other processes' CPU share and its median's uncertainty."""
    quality, other, rel_ci = _gauge(QUALITY), _gauge(OTHER_CPU), _gauge(REL_CI)
    for record in conditions:
        info = series.get(record.series_id)
        if info is None:
            continue
        base = _labels(info)
        state = quality_of(record.other_cpu_fraction, record.converged)
        for name in QUALITIES:
            quality.add_metric([*base, name], 1.0 if name == state else 0.0)
        if record.other_cpu_fraction is not None:
            other.add_metric(base, record.other_cpu_fraction)
        if record.achieved_rel_ci is not None:
            rel_ci.add_metric(base, record.achieved_rel_ci)
    yield from (quality, other, rel_ci)


def _series_activity(series: dict[str, SeriesInfo],
                     activity: Iterable[SeriesActivity]) -> Iterator[Metric]:
    last_run, last_ok = _gauge(LAST_RUN), _gauge(LAST_SUCCESS)
    results, failures = _counter(RESULTS), _counter(FAILURES)
    for record in activity:
        info = series.get(record.series_id)
        if info is None:
            continue
        base = _labels(info)
        last_run.add_metric(base, _ts(record.last_run))
        if record.last_success is not None:
            last_ok.add_metric(base, _ts(record.last_success))
        for status in ("ok", "failed"):
            results.add_metric([*base, status], float(record.results.get(status, 0)))
        for kind, count in sorted(record.failures.items()):
            failures.add_metric([*base, kind], float(count))
    yield from (last_run, last_ok, results, failures)


def _suite_activity(suites: Iterable[SuiteActivity]) -> Iterator[Metric]:
    runs, duration = _counter(RUNS), _gauge(RUN_DURATION)
    for suite in suites:
        for status in ("ok", "partial", "failed", "aborted"):
            runs.add_metric([suite.suite, suite.host, status], float(suite.runs.get(status, 0)))
        duration.add_metric([suite.suite, suite.host],
                            (suite.last_finished - suite.last_started).total_seconds())
    yield from (runs, duration)


class StoreCollector(Collector):
    """Everything the store knows, as Prometheus metric families, at scrape time."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        store = self._store
        yield from benchmark_families({s.series_id: s for s in store.list_series()},
                                      store.latest(), store.series_activity(),
                                      store.suite_activity(), store.series_conditions())


class RunCollector(Collector):
    """One run's benchmark families, from the run itself (for the Pushgateway)."""

    def __init__(self, run: RunResult) -> None:
        self._run = run

    def collect(self) -> Iterator[Metric]:
        run = self._run
        series = {r.series_id: series_info(r) for r in run.results}
        latest = [LatestValue(r.series_id, name, METRICS[name].unit, value, r.finished_at,
                              run.run_id)
                  for r in run.results if r.status == "ok" for name, value in r.metrics.items()
                  if name in METRICS]
        activity = [SeriesActivity(r.series_id, r.finished_at,
                                   r.finished_at if r.status == "ok" else None, {r.status: 1},
                                   {r.failure.kind.value: 1} if r.failure else {})
                    for r in run.results]
        suite = SuiteActivity(run.suite, run.host, {run.status: 1}, run.started_at,
                              run.finished_at)
        conditions = [SeriesConditions(
            r.series_id, r.finished_at,
            r.noise.other_cpu_fraction if r.noise is not None else None,
            r.measurement.achieved_rel_ci if r.measurement is not None else None,
            r.measurement.target_rel_ci if r.measurement is not None else None,
            r.measurement.converged if r.measurement is not None else None)
            for r in run.results if r.status == "ok"]
        yield from benchmark_families(series, latest, activity, [suite], conditions)


class RegressionCollector(Collector):
    """Active detected changes, read at every scrape from the store that keeps them (the
    history of record: PostgreSQL when configured), so an acknowledgement made anywhere
    shows at the next scrape. A store that cannot be read yields no gauge values and
    `collector_regressions_readable 0`, never a failed scrape."""

    def __init__(self, store: Store | Callable[[], Store]) -> None:
        self._source = store

    def collect(self) -> Iterator[Metric]:
        gauge, ab = _gauge(REGRESSION_CHANGE), _gauge(REGRESSION_AB)
        readable = 1.0
        try:
            store = self._source() if callable(self._source) else self._source
            series = {s.series_id: s for s in store.list_series()}
            active = store.regressions(ACTIVE_STATUSES)
        except StoreError as exc:
            log.warning("cannot read regressions: %s", exc)
            readable, series, active = 0.0, {}, []
        for reg in active:
            info = series.get(reg.series_id)
            if info is None:
                continue
            gauge.add_metric([*_labels(info), reg.metric, reg.kind, reg.status,
                              reg.regression_id, reg.attribution], reg.relative_change)
            _add_ab(ab, [*_labels(info), reg.metric, reg.kind, reg.status,
                         reg.regression_id], reg.metric, reg.ab)
        yield gauge
        yield ab
        yield from _detection_state(store if readable else None, series)
        yield _gauge(REGRESSIONS_READABLE, value=readable)


def _add_ab(family: GaugeMetricFamily, labels: list[str], metric: str,
            ab: dict[str, Any] | None) -> None:
    """The A/B's ratio and interval of the regression's metric, when it ran and gave one (a
    failure has no value, nor an A/B that compared another metric)."""
    if not ab or ab.get("failure") or ab.get("metric", metric) != metric:
        return
    verdict = str(ab.get("verdict") or "unknown")
    for bound, key in (("estimate", "ratio"), ("low", "low"), ("high", "high")):
        value = ab.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            family.add_metric([*labels, verdict, bound], float(value))


def _detection_state(store: Store | None, series: dict[str, SeriesInfo]) -> Iterator[Metric]:
    """The detector's learnt noise per series and metric, and the smallest change it can
    page on: what a quiet panel means."""
    noise, mde = _gauge(DETECTION_NOISE), _gauge(DETECTION_MDE)
    states = []
    if store is not None:
        try:
            states = store.detection_states()
        except StoreError as exc:
            log.warning("cannot read detection state: %s", exc)
    for state in states:
        info = series.get(state.series_id)
        if info is None:
            continue
        base = [*_labels(info), state.metric]
        noise.add_metric(base, state.noise)
        mde.add_metric([*base, "schedule"], state.min_detectable_effect)
        if state.confirm_min_detectable_effect is not None:
            mde.add_metric([*base, "confirmation"], state.confirm_min_detectable_effect)
    yield noise
    yield mde


class ServiceCollector(Collector):
    """What is not in the store: versions, outbox backlog, the scheduler's next runs."""

    def __init__(self, build_info: dict[str, str], *,
                 outbox_pending: Callable[[], int] | None = None,
                 next_runs: Callable[[], dict[str, datetime | None]] | None = None,
                 intervals: dict[str, float] | None = None) -> None:
        self._build_info = build_info
        self._outbox_pending = outbox_pending
        self._next_runs = next_runs
        self._intervals = intervals

    def collect(self) -> Iterator[Metric]:
        info = _gauge(BUILD_INFO)
        info.add_metric([self._build_info.get(k, "") for k in BUILD_INFO.labels], 1.0)
        yield info
        if self._outbox_pending is not None:
            yield _gauge(OUTBOX_PENDING, value=float(self._outbox_pending()))
        if self._next_runs is not None:
            nxt = _gauge(NEXT_RUN)
            for suite, when in sorted(self._next_runs().items()):
                if when is not None:
                    nxt.add_metric([suite], _ts(when))
            yield nxt
        if self._intervals is not None:
            every = _gauge(SCHEDULE_INTERVAL)
            for suite, seconds in sorted(self._intervals.items()):
                every.add_metric([suite], seconds)
            yield every


@runtime_checkable
class OutboxStats(Protocol):
    """A store that keeps an outbox (the local SQLite store)."""

    def quarantined_count(self) -> int: ...


class OutboxCollector(Collector):
    """Runs set aside in the outbox because the database refuses them: kept locally,
    retried after a fix (`collector db retry-quarantined`); alert on any."""

    def __init__(self, outbox: OutboxStats) -> None:
        self._outbox = outbox

    def collect(self) -> Iterator[Metric]:
        try:
            count = self._outbox.quarantined_count()
        except StoreError as exc:
            log.warning("outbox quarantine not readable: %s", exc)
            return
        yield _gauge(OUTBOX_QUARANTINED, value=float(count))


class Exposition:
    """The /metrics body. Formatting 1,000 series takes prometheus_client about half a
    second, so the store's part is rendered once per data version and served as bytes;
    the small live part is rendered at every scrape.

    The format is negotiated from the scraper's Accept header by prometheus_client's
    `choose_encoder`: OpenMetrics (what Prometheus asks for) or the classic text format.
    The store part is cached per format; an OpenMetrics store part loses its `# EOF`, so
    the only one is the live part's, at the very end. At a new data version every format
    served lately, and OpenMetrics 1.0.0 from the start, is rendered again at once: the
    scheduler's render() after a run warms what Prometheus scrapes. At most `formats_kept`
    formats are remembered (the version in an Accept header is the client's to invent)."""

    formats_kept = 3

    def __init__(self, store: Store, service: ServiceCollector,
                 regressions: Store | Callable[[], Store] | None = None) -> None:
        self._store = store
        self._stored = CollectorRegistry()
        self._stored.register(StoreCollector(store))
        self._live = CollectorRegistry()
        self._live.register(service)
        self._live.register(RegressionCollector(regressions or store))
        if isinstance(store, OutboxStats):
            self._live.register(OutboxCollector(store))
        self._lock = threading.Lock()
        self._version: str | None = None
        # content type: encoder, the most recent last; Prometheus' format from the start.
        encode, content_type = choose_encoder(f"{OPENMETRICS}; version=1.0.0")
        self._encoders: dict[str, Callable[[Collector], bytes]] = {content_type: encode}
        self._parts: dict[str, bytes] = {}  # content type: the store part, this version

    def render(self, accept: str = "") -> bytes:
        """The exposition for a scraper that sent `accept` as its Accept header (none: the
        classic text format)."""
        encode, content_type = choose_encoder(accept)
        with self._lock:  # one store connection: one scrape at a time reads it
            self._encoders.pop(content_type, None)
            self._encoders[content_type] = encode
            while len(self._encoders) > self.formats_kept:
                oldest = next(iter(self._encoders))
                del self._encoders[oldest]
                self._parts.pop(oldest, None)
            version = self._store.data_version()
            if version != self._version:
                self._version, self._parts = version, {}
            for kind, encoder in self._encoders.items():
                if kind not in self._parts:
                    part = encoder(self._stored)
                    if kind.startswith(OPENMETRICS):
                        part = part.removesuffix(_EOF)
                    self._parts[kind] = part
            return self._parts[content_type] + encode(self._live)


def push_run(run: RunResult, gateway: str, *, job: str = "collector",
             build_info: dict[str, str] | None = None, timeout_s: float = 10.0,
             handler: Callable[..., Callable[[], None]] | None = None) -> None:
    """Push one run's metrics to a Pushgateway, grouped by job, instance (the run's host)
    and suite. PUT replaces only that group: nothing another host or suite pushed is
    touched. The families are the same as /metrics, rendered from the run itself.
    `handler`: prometheus_client's push handler (e.g. basic auth; default: plain HTTP)."""
    from prometheus_client import push_to_gateway
    from prometheus_client.exposition import default_handler

    registry = CollectorRegistry()
    registry.register(RunCollector(run))
    registry.register(ServiceCollector(build_info or {}))
    push_to_gateway(gateway, job=job, registry=registry, timeout=timeout_s,
                    grouping_key={"instance": run.host, "suite": run.suite},
                    handler=handler or default_handler)
