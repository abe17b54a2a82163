"""guidellm's benchmark reports (vllm-project/guidellm): the JSON file of `guidellm benchmark
--output-path report.json` (0.3 and earlier), `guidellm benchmark run ... --output-path` or
`--outputs report.json` (0.4 to 0.6: report `metadata.version` 1) and `guidellm run ...
--output kind=json,path=report.json` (0.7 on: version 2). The three differ in where the
settings are (a benchmark's `args` and `worker` in 0.3, its `config` since), and all hold
`benchmarks`, each one strategy at one load, with its per-request records and the summaries
of their distributions. (guidellm's YAML and CSV outputs are not read.)

Points: each benchmark is its own point, at its own load (a sweep's synchronous,
throughput and rate benchmarks are so many series), all of a report in one run (the
report's `run_id`). A sweep's rates come from the maximum it measured, so they differ from
run to run: each rate's series has one point. A sweep (`profile` sweep, with its throughput
benchmark and at least two rates) is therefore also one point with the collector's `sweep`
load (its `points`: the number of rates; its `concurrency`: the throughput benchmark's), a
series that runs of the same sweep share, as a sweep the collector ran is kept: the maximum
request throughput (the throughput benchmark's), the error ratio over all its benchmarks,
and the curve as samples (collector.domain.serving.SWEEP_SAMPLES: offered rate, completed
requests/s, goodput where SLOs were set, p99 TTFT, p50 TPOT, p99 request latency of each
rate). guidellm's sweep runs a synchronous benchmark first and spreads its rates between
the synchronous and the maximum rate (the collector's from max/points), with constant gaps
by default (the collector's are Poisson). A benchmark in which no request succeeded has no
figures and is left out (the collector records such a run as a failure, not a result).

Metrics, over the successful requests of a benchmark (guidellm reports milliseconds for the
token latencies, seconds for request latency: the collector's are seconds):

- TTFT: request start to first token, per request: ours (p50, p90, p99, mean).
- TPOT: guidellm's `inter_token_latency_ms` of a request is (last token - first token) /
  (output tokens - 1): our TPOT (p50, p90, p99 over requests). guidellm's own TPOT,
  `time_per_output_token_ms`, is (last token - request start) / output tokens, the first
  token's wait included: not mapped. guidellm's summary of its ITL weighs each request by
  its tokens - 1, so its percentiles are not ours: ours are computed from the records.
- ITL: guidellm keeps no gap between two tokens, only each request's first and last token:
  the mean (guidellm's token-weighted mean of the requests' ITL, which is the mean of all
  the gaps) is ours; ITL percentiles are not imported.
- Request latency: request start to end: ours (p50, p90, p99).
- Request throughput: successful requests / the benchmark's duration (its first request's
  start to its last one's end): guidellm's `requests_per_second` mean, which is that; ours.
- Output throughput: the output tokens of the successful requests / the duration: ours
  (guidellm's `output_tokens_per_second` counts tokens by when they arrived, in 0.3 to 0.6
  those of failed requests too, and is not used).
- Error ratio: errored / all requests (successful, errored, and incomplete: those the run's
  end cancelled; the collector has no such class and they are counted in no other figure).
- Goodput (0.7 on, with `slo`): guidellm's `request_goodput` mean, successful requests
  meeting every SLO (TTFT, its ITL, which is our TPOT, and request latency) per second: ours.
  The goodput ratio is guidellm's `slo_attainment`: the good ones over the successful and
  errored requests (incomplete ones left out, where ours counts every request).
- Percentiles and means are computed from the per-request records (numpy's linear method,
  collector.domain.stats.percentile) when the report holds every successful request;
  guidellm's own summaries (another percentile method) are used when it holds a sample of
  them (`--output-sampling`, `sample_requests`, `sample_size`), and TPOT is then left out.
- Samples (seconds): TTFT, TPOT and request latency of the successful records.

Spec: a serving benchmark against the report's target (`endpoint`: its URL and model), the
API (chat or completions) it used, the load (guidellm's strategy: `synchronous`;
`concurrent` with its streams; `throughput`, as many in flight as its `max_concurrency`
(or all its requests), is `concurrent`; `constant` and `poisson` at their rate; a cap on
an open loop's concurrency has no place in the collector's profiles and is dropped; a trace
replay has no profile and is refused), the lengths asked of synthetic data (`prompt_tokens`,
`output_tokens`, with a `_stdev` a normal distribution), else the successful requests' median
lengths; the bound (`max_requests`, `max_seconds`/`max_duration`, else the requests made);
the seed (a Poisson strategy's `random_seed`, else the run's); the SLOs (0.7 on). No warm-up
requests: guidellm's warm-up is a share of the run, excluded from its figures.

Time: the benchmark's start (`start_time`, a Unix time) and duration. Group: the report's
`run_id`. Host: guidellm does not name the machine (its `platform` is the load generator's
OS): `imported`, unless `collector import --host`. Environment: guidellm's version as a
package (the load generator's version is part of what was measured).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.adapters.imports.common import (
    ImportedPoint,
    benchmark_name,
    digest,
    number,
    parse_json,
    parse_time,
)
from collector.domain import stats
from collector.domain.errors import InputError
from collector.domain.serving import SWEEP_SAMPLES
from collector.domain.workload import Origin

ORIGIN = Origin.GUIDELLM
_HEAD = 1 << 20  # a report's settings come before its first benchmark
_MS = 1000.0  # milliseconds a second
_PERCENTILES = ((50, "p50"), (90, "p90"), (99, "p99"))
_SAMPLE_TTFT = "time_to_first_token_seconds"
_SAMPLE_TPOT = "time_per_output_token_seconds"
_SAMPLE_LATENCY = "request_latency_seconds"
_RATE_KINDS = ("constant", "poisson")
_MAX_REQUESTS = ("max_number", "max_requests")  # a request-count constraint's type


def recognises(path: Path, text: str) -> bool:
    """A JSON object with `benchmarks` of guidellm's type `generative_benchmark`."""
    del path  # the content decides, whatever the file is called
    head = text[:_HEAD].lstrip()
    return head.startswith("{") and '"benchmarks"' in head and '"generative_benchmark"' in head


def read(path: Path, text: str) -> list[ImportedPoint]:
    document = parse_json(text, str(path))
    report = _Obj(str(path), document if isinstance(document, dict) else None, "")
    if report.data is None:
        raise InputError(f"{path}: expected a JSON object (a guidellm report), got "
                         f"{type(document).__name__}")
    settings = _Settings.of(report)
    benchmarks = report.objects("benchmarks")
    points: list[ImportedPoint] = []
    read_ones: list[_Benchmark] = []
    for index, item in enumerate(benchmarks):
        benchmark = _Benchmark.of(item, settings, f"{path}:benchmarks[{index}]")
        read_ones.append(benchmark)
        if benchmark.point is not None:
            points.append(benchmark.point)
    if not points:
        raise InputError(f"{path}: no benchmark with a successful request: nothing to import")
    sweep = _sweep(path, read_ones)
    if sweep is not None:
        points.append(sweep)
    return points


# -- typed reads -----------------------------------------------------------------------------


class _Obj:
    """A JSON object of the report, read with messages naming the file, the record and the
    key (`report.json:benchmarks[2]: metrics.request_latency.successful: missing mean`)."""

    def __init__(self, where: str, data: Mapping[str, Any] | None, prefix: str) -> None:
        self.where = where
        self.data = data
        self.prefix = prefix

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, problem: str) -> InputError:
        return InputError(f"{self.where}: {self._name(key)}: {problem}")

    def get(self, key: str) -> Any:
        return None if self.data is None else self.data.get(key)

    def obj(self, key: str, required: bool = True) -> _Obj:
        value = self.get(key)
        if value is None and not required:
            return _Obj(self.where, None, f"{self._name(key)}.")
        if not isinstance(value, dict):
            raise self.fail(key, "missing" if value is None else
                            f"expected an object, got {type(value).__name__}")
        return _Obj(self.where, value, f"{self._name(key)}.")

    def objects(self, key: str) -> list[_Obj]:
        value = self.get(key)
        if not isinstance(value, list):
            raise self.fail(key, "missing" if value is None else
                            f"expected a list, got {type(value).__name__}")
        out = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.fail(f"{key}[{index}]",
                                f"expected an object, got {type(item).__name__}")
            out.append(_Obj(self.where, item, f"{self._name(key)}[{index}]."))
        return out

    def num(self, key: str) -> float:
        value = self.get(key)
        if value is None:
            raise self.fail(key, "missing")
        return number(value, self.where, self._name(key))

    def opt_num(self, key: str) -> float | None:
        return None if self.get(key) is None else self.num(key)

    def count(self, key: str) -> int:
        value = self.num(key)
        if value < 0 or value != int(value):
            raise self.fail(key, f"expected a count, got {value:g}")
        return int(value)

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "missing" if value is None else
                            f"expected text, got {value!r:.60}")
        return value.strip()

    def opt_text(self, key: str) -> str | None:
        return None if self.get(key) is None else self.text(key)


# -- the report's settings -------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """What the report says of all its benchmarks; each benchmark may say more (0.3 keeps
    it all in the benchmark)."""

    version: int  # the report's schema: 0 (guidellm 0.3 and earlier), 1 or 2
    guidellm: str | None
    data: Any  # the data arguments (synthetic settings, or a dataset)
    api: str | None
    max_requests: float | None
    max_seconds: float | None
    seed: int | None
    slos: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, report: _Obj) -> _Settings:
        metadata = report.obj("metadata", required=False)
        version = 0 if metadata.data is None else metadata.count("version")
        guidellm = metadata.opt_text("guidellm_version")
        if version == 0:
            return cls(0, guidellm, None, None, None, None, None)
        if version == 1:
            args = report.obj("args")
            seed = args.opt_num("random_seed")
            data = args.get("data")
            return cls(1, guidellm, data[0] if isinstance(data, list) and data else data,
                       args.opt_text("data_request_formatter") or args.opt_text("request_type"),
                       args.opt_num("max_requests"), args.opt_num("max_seconds"),
                       None if seed is None else int(seed))
        if version != 2:
            raise report.fail("metadata.version", f"guidellm's report schema {version} is not "
                              "one this reads (0.3's, 1 or 2)")
        spec = report.obj("config").obj("spec")
        data = [d.data for d in spec.objects("data")] if spec.get("data") is not None else []
        max_requests = max_seconds = None
        for constraint in spec.objects("constraints") if spec.get("constraints") else []:
            kind = constraint.get("kind")
            if kind == "max_requests":
                max_requests = _first(constraint, "count")
            elif kind == "max_duration":
                max_seconds = _first(constraint, "seconds")
        seed_value = spec.obj("seed", required=False).opt_num("value")
        slo = spec.obj("metrics", required=False).obj("slo", required=False)
        return cls(2, guidellm, data[0] if data else None,
                   spec.obj("backend", required=False).opt_text("request_format"),
                   max_requests, max_seconds,
                   None if seed_value is None else int(seed_value), _slos(slo))


def _first(obj: _Obj, key: str) -> float | None:
    """A setting that is one number or one per benchmark (the first, then)."""
    value = obj.get(key)
    if isinstance(value, list):
        return None if not value else number(value[0], obj.where, f"{obj.prefix}{key}[0]")
    return obj.opt_num(key)


def _slos(slo: _Obj) -> dict[str, float]:
    if slo.data is None:
        return {}
    return {ours: slo.num(theirs) for theirs, ours in
            (("ttft_ms", "ttft_ms"), ("tpot_ms", "tpot_ms"), ("e2el_ms", "e2e_ms"))
            if slo.get(theirs) is not None}


def _synthetic(data: Any, where: str) -> dict[str, Any] | None:
    """guidellm's synthetic-data settings (`prompt_tokens=32,output_tokens=16`, its JSON,
    or 0.7's object), None for a dataset."""
    if isinstance(data, str):
        text = data.strip()
        if text.startswith("{"):
            data = parse_json(text, where)
        elif "=" in text:
            pairs = [part.split("=", 1) for part in text.split(",") if "=" in part]
            data = {key.strip(): value.strip() for key, value in pairs}
    if not isinstance(data, dict) or "prompt_tokens" not in data or "output_tokens" not in data:
        return None
    lengths: dict[str, dict[str, Any]] = {}
    for which in ("prompt", "output"):
        mean = number(data.get(f"{which}_tokens"), where, f"data {which}_tokens")
        if mean < 1:
            raise InputError(f"{where}: data {which}_tokens: expected at least 1, got {mean:g}")
        lengths[which] = {"mean": round(mean)}
        stdev = data.get(f"{which}_tokens_stdev")
        if stdev is not None:
            spread = number(stdev, where, f"data {which}_tokens_stdev") / mean
            if spread > 0:
                lengths[which].update(distribution="normal", spread=min(spread, 1.0))
    return lengths


# -- one benchmark ---------------------------------------------------------------------------


@dataclass
class _Benchmark:
    where: str
    run_id: str
    profile_kind: str | None
    strategy: str
    rate: float | None
    concurrency: int | None
    point: ImportedPoint | None
    serving: dict[str, Any]
    start: float
    end: float
    errored: int
    total: int

    @classmethod
    def of(cls, b: _Obj, settings: _Settings, where: str) -> _Benchmark:
        b = _Obj(where, b.data, "")
        if b.get("type_") not in (None, "generative_benchmark"):
            raise b.fail("type_", f"expected generative_benchmark, got {b.get('type_')!r:.40}")
        if settings.version == 0:
            config, args = b, b.obj("args")
            strategy = args.obj("strategy")
            worker = b.obj("worker")
            target, model = worker.text("backend_target"), worker.text("backend_model")
            totals = b.obj("request_totals")
            profile = args.obj("profile", required=False)
            profile_kind = profile.opt_text("type_")
            data = b.obj("request_loader", required=False).get("data")
            max_requests, max_seconds = args.opt_num("max_number"), args.opt_num("max_duration")
        else:
            config = b.obj("config")
            strategy = config.obj("strategy")
            backend = config.obj("backend")
            target, model = backend.text("target"), backend.text("model")
            totals = b.obj("metrics").obj("request_totals")
            profile = config.obj("profile", required=False)
            profile_kind = profile.opt_text("kind") or profile.opt_text("type_")
            data = settings.data
            max_requests, max_seconds = _constraints(config, settings)
        metrics = b.obj("metrics")
        records = _Records.of(b.obj("requests"), totals)
        kind = strategy.text("type_")
        start, end, duration = b.num("start_time"), b.num("end_time"), b.num("duration")
        if duration <= 0:
            raise b.fail("duration", f"expected a positive number of seconds, got {duration:g}")
        load = _load(strategy, kind, records.total)
        synthetic = _synthetic(data, where)
        seed = strategy.opt_num("random_seed")
        slos = _slos(config.obj("slo", required=False)) or dict(settings.slos)
        serving: dict[str, Any] = {
            "endpoint": {"url": target, "model_name": model},
            "api": _api(settings, records, config),
            "profile": load,
            "warmup_requests": 0,
            "input_tokens": synthetic["prompt"] if synthetic else
            {"mean": records.median_tokens("prompt_tokens", metrics, "prompt_token_count")},
            "output_tokens": synthetic["output"] if synthetic else
            {"mean": records.median_tokens("output_tokens", metrics, "output_token_count")},
            "seed": int(seed) if seed is not None else settings.seed or 0,
        }
        if max_requests is None and max_seconds is None:
            max_requests = records.total
        serving["requests"] = None if max_requests is None else int(max_requests)
        if max_seconds is not None:
            serving["duration_s"] = max_seconds
        if slos:
            serving["slos"] = slos
        run_id = config.text("run_id")
        point = None
        if records.successful:
            point = ImportedPoint(
                origin=ORIGIN, where=where, group=digest("guidellm", run_id),
                spec={"name": benchmark_name(model), "model": _model(model), "serving": serving},
                time=parse_time(start, where, "start_time"),
                metrics=_metrics(b, metrics, records, duration),
                samples=records.samples(), environment=_environment(settings),
                duration_s=duration)
        return cls(where, run_id, profile_kind, kind, load.get("rate"), load.get("concurrency"),
                   point, serving, start, end, records.errored, records.total)


def _constraints(config: _Obj, settings: _Settings) -> tuple[float | None, float | None]:
    """The benchmark's own bounds (`config.constraints`, by their type: guidellm takes
    several names for each), else the report's."""
    found = config.obj("constraints", required=False)
    bounds: dict[str, float | None] = {"requests": settings.max_requests,
                                       "seconds": settings.max_seconds}
    for name in found.data or {}:
        constraint = found.obj(name)
        kind = constraint.get("type_")
        bound, keys = (("requests", ("count", "max_num")) if kind in _MAX_REQUESTS else
                       ("seconds", ("seconds", "max_duration")) if kind == "max_duration" else
                       (None, ()))
        args = constraint.obj("args", required=False)
        source = args if args.data is not None else constraint
        for key in keys:
            value = source.get(key)
            if isinstance(value, list):  # one a benchmark: this one's
                index = constraint.get("current_index")
                value = value[index if isinstance(index, int) and 0 <= index < len(value)
                              else 0] if value else None
            if value is not None and bound is not None:
                bounds[bound] = number(value, config.where, f"{source.prefix}{key}")
    return bounds["requests"], bounds["seconds"]


def _load(strategy: _Obj, kind: str, total: int) -> dict[str, Any]:
    rate, streams = strategy.opt_num("rate"), strategy.opt_num("streams")
    cap = strategy.opt_num("max_concurrency")
    if kind == "synchronous":
        return {"kind": "synchronous"}
    if kind == "concurrent":
        if streams is None:
            raise strategy.fail("streams", "missing (a concurrent strategy's requests in flight)")
        return {"kind": "concurrent", "concurrency": int(streams)}
    if kind == "throughput":
        return {"kind": "concurrent", "concurrency": int(cap) if cap is not None else total}
    if kind in _RATE_KINDS:
        if rate is None:
            raise strategy.fail("rate", f"missing (a {kind} strategy's requests per second)")
        return {"kind": kind, "rate": rate}
    raise strategy.fail("type_", f"guidellm's {kind!r:.40} strategy has no load profile in the "
                        "collector (synchronous, concurrent, throughput, constant, poisson)")


def _api(settings: _Settings, records: _Records, config: _Obj) -> str:
    said = [settings.api, records.request_type,
            config.obj("backend", required=False).opt_text("request_format")]
    return "chat" if any(s is not None and "chat" in s for s in said) else "completions"


def _model(model: str) -> dict[str, str]:
    if model.startswith(("/", "./", "../", "~")):
        return {"source": "local", "path": model}
    return {"source": "hub", "id": model}


def _environment(settings: _Settings) -> dict[str, Any]:
    return {"packages": {"guidellm": settings.guidellm}} if settings.guidellm else {}


# -- the per-request records -----------------------------------------------------------------


@dataclass
class _Records:
    successful: list[_Obj]
    errored: int
    total: int
    complete: bool  # the report holds every successful request
    request_type: str | None

    @classmethod
    def of(cls, requests: _Obj, totals: _Obj) -> _Records:
        successful = requests.objects("successful") if requests.get("successful") else []
        expected = totals.count("successful")
        errored, total = totals.count("errored"), totals.count("total")
        if len(successful) > expected:
            raise requests.fail("successful", f"{len(successful)} records, more than the "
                                f"{expected} successful requests counted")
        if expected + errored > total:
            raise totals.fail("total", f"{total}, fewer than successful + errored "
                              f"({expected + errored})")
        request_type = successful[0].opt_text("request_type") if successful else None
        return cls(successful, errored, total, len(successful) == expected, request_type)

    def values(self, key: str, per_second: float = 1.0) -> list[float]:
        """The successful records' values of `key` in seconds (`per_second`: its units in a
        second; a request without one is left out)."""
        return [record.num(key) / per_second for record in self.successful
                if record.get(key) is not None]

    def median_tokens(self, key: str, metrics: _Obj, summary: str) -> int:
        values = self.values(key)
        typical = (stats.percentile(sorted(values), 50.0) if values else
                   metrics.obj(summary).obj("successful").num("mean"))
        return max(1, round(typical))

    def samples(self) -> dict[str, list[float]]:
        found = {_SAMPLE_TTFT: self.values("time_to_first_token_ms", _MS),
                 _SAMPLE_TPOT: self.values("inter_token_latency_ms", _MS),
                 _SAMPLE_LATENCY: self.values("request_latency")}
        return {name: values for name, values in found.items() if values}


# -- metrics ---------------------------------------------------------------------------------


def _metrics(b: _Obj, metrics: _Obj, records: _Records, duration: float) -> dict[str, float]:
    out = _latencies(metrics, records)
    itl = metrics.obj("inter_token_latency_ms").obj("successful")
    if itl.opt_num("count"):
        out["inter_token_latency_mean_seconds"] = itl.num("mean") / _MS
    out["request_throughput_per_second"] = (
        metrics.obj("requests_per_second").obj("successful").num("mean"))
    output_tokens = metrics.obj("output_token_count").obj("successful").num("total_sum")
    out["output_throughput_tokens_per_second"] = output_tokens / duration
    if records.total:
        out["request_error_ratio"] = records.errored / records.total
    if metrics.get("request_goodput") is not None:
        out["goodput_requests_per_second"] = (
            metrics.obj("request_goodput").obj("successful").num("mean"))
    attainment = metrics.opt_num("slo_attainment")
    if attainment is not None:
        if not 0 <= attainment <= 1:
            raise metrics.fail("slo_attainment", f"expected a share (0..1), got {attainment:g}")
        out["goodput_ratio"] = attainment
    for name, value in out.items():
        if value < 0:
            raise InputError(f"{b.where}: {name} would be {value:g}: guidellm's figures are "
                             "never negative")
    return out


def _latencies(metrics: _Obj, records: _Records) -> dict[str, float]:
    """TTFT, request latency and TPOT: from the records when the report holds them all,
    else (TPOT left out) from guidellm's summaries."""
    out: dict[str, float] = {}
    samples = records.samples()
    for stem, sample, summary, scale in (
            ("time_to_first_token", _SAMPLE_TTFT, "time_to_first_token_ms", _MS),
            ("request_latency", _SAMPLE_LATENCY, "request_latency", 1.0),
            ("time_per_output_token", _SAMPLE_TPOT, None, _MS)):
        values = sorted(samples.get(sample, ()))
        mean: float | None = None
        if records.complete and values:
            for q, label in _PERCENTILES:
                out[f"{stem}_{label}_seconds"] = stats.percentile(values, q)
            mean = stats.mean(values)
        elif summary is not None:
            successful = metrics.obj(summary).obj("successful")
            percentiles = successful.obj("percentiles")
            for _, label in _PERCENTILES:
                out[f"{stem}_{label}_seconds"] = percentiles.num(label) / scale
            mean = successful.num("mean") / scale
        if stem == "time_to_first_token" and mean is not None:
            out["time_to_first_token_mean_seconds"] = mean
    return out


# -- a sweep ---------------------------------------------------------------------------------


def _sweep(path: Path, benchmarks: Sequence[_Benchmark]) -> ImportedPoint | None:
    """The sweep of a report whose benchmarks are one sweep run, as one point (the module's
    docstring says why); None for any other report."""
    if not benchmarks or any(b.profile_kind != "sweep" for b in benchmarks) or \
            len({b.run_id for b in benchmarks}) != 1:
        return None
    throughput = [b for b in benchmarks if b.strategy == "throughput" and b.point is not None]
    rates = sorted((b for b in benchmarks if b.strategy in _RATE_KINDS and b.rate is not None),
                   key=lambda b: b.rate or 0.0)
    if len(throughput) != 1 or not 2 <= len(rates) <= 20:
        return None
    top = throughput[0]
    assert top.point is not None
    first = benchmarks[0]
    profile: dict[str, Any] = {"kind": "sweep", "points": len(rates)}
    if top.concurrency is not None:
        profile["concurrency"] = top.concurrency
    serving = {**top.serving, "profile": profile}
    samples: dict[str, list[float]] = {SWEEP_SAMPLES["offered rate"]: [b.rate or 0.0
                                                                      for b in rates]}
    curve = (("throughput", "request_throughput_per_second"),
             ("goodput", "goodput_requests_per_second"),
             ("p99 TTFT", "time_to_first_token_p99_seconds"),
             ("p50 TPOT", "time_per_output_token_p50_seconds"),
             ("p99 request latency", "request_latency_p99_seconds"))
    for point_name, metric in curve:
        values = [b.point.metrics.get(metric) if b.point is not None else
                  (0.0 if point_name == "throughput" else None) for b in rates]
        if all(v is not None for v in values):
            samples[SWEEP_SAMPLES[point_name]] = [float(v or 0.0) for v in values]
    total = sum(b.total for b in benchmarks)
    metrics = {"max_request_throughput_per_second":
               top.point.metrics["request_throughput_per_second"]}
    if total:
        metrics["request_error_ratio"] = sum(b.errored for b in benchmarks) / total
    where = f"{path}:benchmarks[0-{len(benchmarks) - 1}] (sweep)"
    return ImportedPoint(
        origin=ORIGIN, where=where, group=top.point.group, spec={**top.point.spec,
                                                                  "serving": serving},
        time=parse_time(first.start, where, "start_time"), metrics=metrics, samples=samples,
        environment=top.point.environment,
        duration_s=max(0.0, max(b.end for b in benchmarks) - first.start))
