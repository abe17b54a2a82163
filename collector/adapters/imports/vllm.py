"""vLLM's serving benchmark results: the JSON that `vllm bench serve --save-result` writes
(vllm/benchmarks/serve.py), and before it `benchmarks/benchmark_serving.py --save-result`.

A file holds one record (one run of the tool: one load against one server), or several,
one a line, when `--append-result` added runs to it; each record is one point, its own run.
`where` is the file, with the line for an appended file.

Metrics (vLLM reports milliseconds: the collector's are seconds):

- TTFT (`*_ttft_ms`): request sent to first token, per successful request. Same as ours:
  mean, median (p50), p90, p99.
- TPOT (`*_tpot_ms`): vLLM's is (latency - TTFT) / (output tokens - 1) per successful
  request of more than one token, where latency is the end of the response: ours ends at
  the last token (the last chunk's arrival), so vLLM's includes the few hundred microseconds
  between the last token and the end of the stream. p50, p90, p99.
- ITL (`*_itl_ms`): every gap between consecutive chunks, pooled over the successful
  requests. Same as ours: mean, p50, p90, p99.
- E2EL (`*_e2el_ms`, present when `--percentile-metrics` asks for it): request sent to end
  of response; ours. p50, p90, p99.
- `request_throughput` (the v0.4-era `request_inthroughput` too): completed requests / the
  run's duration; ours. `output_throughput`: output tokens of completed requests / duration
  (tokens as the server's usage counts them, else vLLM's tokenizer); ours.
- `request_goodput` (the 0.8-era `request_goodput:`, with its stray colon; None without
  `--goodput`): completed requests meeting every `--goodput` SLO (ttft, tpot, e2el) / the
  duration: ours, vLLM's being the definition ours follows. The goodput ratio is the good
  requests (goodput x duration, rounded) over all requests. vLLM does not write the SLOs it
  judged against, so they are not in the spec (a run with other SLOs joins the same series).
- `failed` (or, before vLLM wrote it, the requests listed less the completed ones) over
  all requests: the error ratio.
- Percentiles vLLM did not write (`--metric-percentiles` defaults to 99) are computed from
  the per-request values where the file has them; vLLM's are numpy's linear percentiles,
  the same as collector.domain.stats.percentile, so both agree on the same values.
- Not mapped: std, total token throughput, peak output tokens/s, peak concurrency, client
  queue times, RTFx, speculative-decoding and diffusion figures.

Samples (successful requests only, seconds): `ttfts`, `itls` (flattened) and per-request
TPOT from the per-request lists of `--save-detailed` (the 0.8-era script wrote them always:
its `--save-detailed` check ran before the results were merged in); request latency from
`latencies`, which vllm/benchmarks/serve.py writes without `--save-detailed` too. A request
failed where its `errors` entry is not empty; without an `errors` list the lists are used
only when no request failed. TPOT samples are vLLM's own (latency - TTFT) / (tokens - 1)
where the file has `latencies`, else the sum of the request's gaps / (tokens - 1). (A
failure whose error is empty, which vLLM allows, leaves the lists without samples.)

Spec: a serving benchmark against an external endpoint. vLLM does not write the server's
URL: the endpoint is `http://unknown.invalid` with the model id as the model name (the
same for every vLLM import, so the model and the load tell series apart). The model is
`model_id` (a path is a local model, else a Hub id). The load:

- `request_rate` "inf" (all requests at once): a closed loop, `concurrent` with
  `max_concurrency` in flight, or every prompt (`num_prompts`) when no cap was set;
- a finite rate with `burstiness` 1 (vLLM's default, and the only value before it had the
  option): `poisson` at that rate. A cap (`max_concurrency`) on an open loop has no place
  in the collector's profiles and is dropped: runs that differ only by it share a series;
- any other burstiness (gamma-distributed gaps) and `ramp_up_strategy` have no profile in
  the collector and are refused, naming the record.

`requests` is all the requests of the run (completed and failed: `num_prompts`; no warm-up
requests: vLLM's `--num-warmups` is not written and is 0 by default). vLLM writes neither
the dataset nor the lengths it asked for: the prompt and output lengths (identity) are a
request's typical length, the median of the per-request lengths where the file lists them
(`input_lens`; the successful requests' `output_lens`), so a few answers cut short by an
end-of-sequence token or a failure leave the series as it is; else the mean (total tokens /
completed requests), which a dataset with free-length answers can move from run to run.
The server's device and dtype are not written: they are left at the collector's defaults.

Time: `date` is when the run ended, in the benchmarking machine's local time with no zone
(`%Y%m%d-%H%M%S`): taken as UTC, and the run started `duration` seconds before it.
Group: a digest of the record's date, model, backend, label and load settings and its
duration, so the same record from any copy of the file is the same run.
Environment: a `version` key (the v0.4-era `--version`, or `--metadata version=...`) is the
server's version, written as the collector writes a vLLM endpoint's (`version 0.6.3`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from collector.adapters.imports.common import (
    ImportedPoint,
    as_utc,
    benchmark_name,
    digest,
    number,
    parse_json,
    parse_time,
)
from collector.domain import stats
from collector.domain.errors import InputError
from collector.domain.workload import Origin

ORIGIN = Origin.VLLM_BENCH_SERVE
# vLLM does not write the server's URL; a name that can never resolve (RFC 2606).
UNKNOWN_ENDPOINT = "http://unknown.invalid"
_DATE_FORMAT = "%Y%m%d-%H%M%S"
_HEAD = 65_536  # where the keys that tell the format come: before any per-request list
_MARKERS = ('"date"', '"model_id"', '"num_prompts"')
_THROUGHPUT_KEYS = ('"request_throughput"', '"request_inthroughput"')
_MS = 1000.0  # milliseconds a second

# vLLM's figure -> (the collector's metric by percentile label, its sample)
_PERCENTILES = ("p50", "p90", "p99")
_FIGURES = {
    "ttft": ("time_to_first_token", "time_to_first_token_seconds"),
    "tpot": ("time_per_output_token", "time_per_output_token_seconds"),
    "itl": ("inter_token_latency", "inter_token_latency_seconds"),
    "e2el": ("request_latency", "request_latency_seconds"),
}
_MEANS = {"ttft": "time_to_first_token_mean_seconds", "itl": "inter_token_latency_mean_seconds"}


def recognises(path: Path, text: str) -> bool:
    """A JSON object that starts with vLLM's setup keys (date, model_id, num_prompts) and
    has its request throughput, before any per-request list."""
    del path  # the content decides, whatever the file is called
    head = text[:_HEAD].lstrip()
    return (head.startswith("{") and all(marker in head for marker in _MARKERS)
            and any(key in head for key in _THROUGHPUT_KEYS))


def read(path: Path, text: str) -> list[ImportedPoint]:
    return [_point(where, record) for where, record in _records(path, text)]


# -- records ---------------------------------------------------------------------------------


def _records(path: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, record) of each record: one document, or one a line (--append-result)."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise InputError(f"{path}: empty file: expected vLLM's benchmark result (JSON)")
    if len(lines) > 1 and all(line.lstrip().startswith("{") for _, line in lines):
        found = [(f"{path}:{n}", parse_json(line, str(path), n)) for n, line in lines]
    else:
        found = [(str(path), parse_json(text, str(path)))]
    for where, record in found:
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object (one vLLM benchmark result), "
                             f"got {type(record).__name__}")
    return found


class _Fields:
    """Typed reads of one record that name the file, the record and the key."""

    def __init__(self, where: str, record: Mapping[str, Any]) -> None:
        self.where = where
        self.record = record

    def has(self, key: str) -> bool:
        return self.record.get(key) is not None

    def missing(self, key: str) -> InputError:
        return InputError(f"{self.where}: missing {key}")

    def number(self, key: str) -> float:
        if key not in self.record:
            raise self.missing(key)
        return number(self.record[key], self.where, key)

    def optional_number(self, key: str) -> float | None:
        return self.number(key) if self.has(key) else None

    def count(self, key: str) -> int:
        value = self.number(key)
        if value < 0 or value != int(value):
            raise InputError(f"{self.where}: {key}: expected a count, got {value:g}")
        return int(value)

    def text(self, key: str) -> str:
        value = self.record.get(key)
        if not isinstance(value, str) or not value.strip():
            if key not in self.record:
                raise self.missing(key)
            raise InputError(f"{self.where}: {key}: expected text, got {value!r:.60}")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if self.has(key) else None

    def series(self, key: str) -> list[Any] | None:
        value = self.record.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise InputError(f"{self.where}: {key}: expected a list, got "
                             f"{type(value).__name__}")
        return value

    def numbers(self, key: str) -> list[float] | None:
        values = self.series(key)
        if values is None:
            return None
        return [number(v, self.where, f"{key}[{i}]") for i, v in enumerate(values)]


# -- one record ------------------------------------------------------------------------------


def _point(where: str, record: Mapping[str, Any]) -> ImportedPoint:
    fields = _Fields(where, record)
    model_id = fields.text("model_id")
    duration = fields.number("duration")
    if duration <= 0:
        raise InputError(f"{where}: duration: expected a positive number of seconds, got "
                         f"{duration:g}")
    completed = fields.count("completed")
    if completed == 0:
        raise InputError(f"{where}: no request completed (completed is 0): a run with no "
                         "successful request has no figures to import")
    requests = _Requests(fields, completed)
    metrics = _metrics(fields, requests, duration)
    backend = fields.optional_text("backend") or ""
    serving = {
        "endpoint": {"url": UNKNOWN_ENDPOINT, "model_name": model_id},
        "api": "chat" if "chat" in backend or "chat" in str(record.get("endpoint", "")) else
        "completions",
        "profile": _profile(fields, requests.total),
        "requests": requests.total,
        "warmup_requests": 0,
        "input_tokens": {"mean": _length(fields, "input", requests, completed)},
        "output_tokens": {"mean": _length(fields, "output", requests, completed)},
    }
    spec = {"name": benchmark_name(model_id), "model": _model(model_id), "serving": serving}
    ended = _date(fields)
    environment: dict[str, Any] = {}
    version = record.get("version")
    if isinstance(version, str) and version.strip() and version.strip() != "N/A":
        environment["server"] = f"version {version.strip()}"[:200]
    group = digest(record.get("date"), model_id, backend, record.get("label"),
                   record.get("request_rate"), record.get("burstiness"),
                   record.get("max_concurrency"), record.get("num_prompts"), duration,
                   completed)
    return ImportedPoint(origin=ORIGIN, where=where, group=group, spec=spec,
                         time=ended - timedelta(seconds=duration), metrics=metrics,
                         samples=requests.samples(), environment=environment,
                         duration_s=duration)


def _model(model_id: str) -> dict[str, str]:
    if model_id.startswith(("/", "./", "../", "~")):
        return {"source": "local", "path": model_id}
    return {"source": "hub", "id": model_id}


def _date(fields: _Fields) -> datetime:
    date = fields.text("date")
    try:
        return as_utc(datetime.strptime(date.strip(), _DATE_FORMAT))
    except ValueError:
        pass
    try:
        return parse_time(date, fields.where, "date")
    except InputError:
        raise InputError(f"{fields.where}: date: expected vLLM's {_DATE_FORMAT} (or an ISO "
                         f"8601 time), got {date!r:.60}") from None


def _profile(fields: _Fields, total: int) -> dict[str, Any]:
    where = fields.where
    if fields.has("ramp_up_strategy"):
        raise InputError(f"{where}: ramp_up_strategy {fields.record['ramp_up_strategy']!r:.40}"
                         ": a ramped request rate has no load profile in the collector")
    concurrency = fields.optional_number("max_concurrency")
    if concurrency is not None and (concurrency < 1 or concurrency != int(concurrency)):
        raise InputError(f"{where}: max_concurrency: expected a positive count, got "
                         f"{concurrency:g}")
    if "request_rate" not in fields.record:
        raise fields.missing("request_rate")
    rate_value = fields.record["request_rate"]
    if isinstance(rate_value, str) and rate_value.strip().lower() in ("inf", "infinity"):
        return {"kind": "concurrent",
                "concurrency": int(concurrency) if concurrency is not None else total}
    rate = number(rate_value, where, "request_rate")
    if rate <= 0:
        raise InputError(f"{where}: request_rate: expected a positive rate, got {rate:g}")
    burstiness = fields.optional_number("burstiness")
    if burstiness is not None and burstiness != 1.0:
        raise InputError(f"{where}: burstiness {burstiness:g}: gamma-distributed arrivals "
                         "have no load profile in the collector (only 1: Poisson)")
    return {"kind": "poisson", "rate": rate}


def _length(fields: _Fields, which: str, requests: _Requests, completed: int) -> int:
    """A request's typical length: the median over the requests the file lists (the
    successful ones for outputs), else the total over the completed requests."""
    listed = requests.input_lens if which == "input" else requests.successful(
        requests.output_lens)
    if listed:
        typical = stats.percentile(sorted(listed), 50.0)
    else:
        keys = (f"total_{which}_tokens", f"total_{which}")  # the v0.4 era: total_input
        key = next((k for k in keys if fields.has(k)), keys[0])
        typical = fields.number(key) / completed
    return max(1, round(typical))


class _Requests:
    """The per-request lists of a record, aligned, and which requests succeeded."""

    def __init__(self, fields: _Fields, completed: int) -> None:
        self.fields = fields
        where = fields.where
        self.ttfts = fields.numbers("ttfts")
        self.latencies = fields.numbers("latencies")
        self.output_lens = fields.numbers("output_lens")
        self.input_lens = fields.numbers("input_lens")
        itls = fields.series("itls")
        self.itls = None if itls is None else [
            [number(gap, where, f"itls[{i}][{j}]") for j, gap in enumerate(_list(v, where, i))]
            for i, v in enumerate(itls)]
        errors = fields.series("errors")
        lists = {name: values for name, values in (
            ("ttfts", self.ttfts), ("itls", self.itls), ("latencies", self.latencies),
            ("output_lens", self.output_lens), ("input_lens", self.input_lens),
            ("errors", errors)) if values is not None}
        lengths = {len(values) for values in lists.values()}
        if len(lengths) > 1:
            shown = ", ".join(f"{name} {len(values)}" for name, values in lists.items())
            raise InputError(f"{where}: the per-request lists differ in length ({shown})")
        self.listed = lengths.pop() if lengths else None
        if fields.has("failed"):
            self.failed: int | None = fields.count("failed")
        elif self.listed is not None:  # the lists hold every request, failed ones too
            self.failed = self.listed - completed
        else:
            self.failed = None
        if self.failed is not None and self.failed < 0:
            raise InputError(f"{where}: {self.listed} requests listed, {completed} completed")
        self.total = (completed + self.failed if self.failed is not None
                      else fields.count("num_prompts"))
        if self.listed is not None and self.listed != self.total:
            raise InputError(f"{where}: the per-request lists hold {self.listed} requests, "
                             f"completed and failed {self.total}")
        # Which requests succeeded: those without an error, or all where none failed. (A
        # failure can have an empty error, vLLM's `response.reason or ""`: then the lists
        # cannot say which, and give no samples.)
        self.ok: list[bool] | None = None
        if errors is not None:
            self.ok = [not e for e in errors]
        elif self.listed is not None and self.failed == 0:
            self.ok = [True] * self.listed
        if self.ok is not None and sum(self.ok) != completed:
            self.ok = None

    def successful(self, values: Sequence[Any] | None) -> list[Any] | None:
        if values is None or self.ok is None:
            return None
        return [v for v, ok in zip(values, self.ok, strict=True) if ok]

    def samples(self) -> dict[str, list[float]]:
        found: dict[str, list[float] | None] = {
            _FIGURES["ttft"][1]: self.successful(self.ttfts),
            _FIGURES["e2el"][1]: self.successful(self.latencies),
            _FIGURES["tpot"][1]: self._tpots(),
        }
        itls = self.successful(self.itls)
        if itls is not None:
            found[_FIGURES["itl"][1]] = [gap for gaps in itls for gap in gaps]
        return {name: values for name, values in found.items() if values}

    def _tpots(self) -> list[float] | None:
        lens = self.successful(self.output_lens)
        ttfts = self.successful(self.ttfts)
        if lens is None or ttfts is None:
            return None
        latencies = self.successful(self.latencies)
        itls = self.successful(self.itls)
        tpots = []
        for i, (tokens, ttft) in enumerate(zip(lens, ttfts, strict=True)):
            if tokens <= 1:
                continue
            if latencies is not None:
                tpots.append((latencies[i] - ttft) / (tokens - 1))
            elif itls is not None:
                tpots.append(math.fsum(itls[i]) / (tokens - 1))
            else:
                return None
        return tpots


def _list(value: Any, where: str, index: int) -> list[Any]:
    if not isinstance(value, list):
        raise InputError(f"{where}: itls[{index}]: expected a list of gaps, got "
                         f"{type(value).__name__}")
    return value


# -- metrics ---------------------------------------------------------------------------------


def _metrics(fields: _Fields, requests: _Requests, duration: float) -> dict[str, float]:
    where = fields.where
    samples = requests.samples()
    metrics: dict[str, float] = {}
    for figure, (stem, sample) in _FIGURES.items():
        ordered = sorted(samples.get(sample, ()))
        for label in _PERCENTILES:
            keys = [f"{label}_{figure}_ms"] + ([f"median_{figure}_ms"] if label == "p50" else [])
            key = next((k for k in keys if fields.has(k)), None)
            name = f"{stem}_{label}_seconds"
            if key is not None:
                metrics[name] = fields.number(key) / _MS
            elif ordered:
                metrics[name] = stats.percentile(ordered, float(label[1:]))
        if figure in _MEANS and fields.has(f"mean_{figure}_ms"):
            metrics[_MEANS[figure]] = fields.number(f"mean_{figure}_ms") / _MS
    throughput_key = next((k for k in ("request_throughput", "request_inthroughput")
                           if k in fields.record), "request_throughput")
    metrics["request_throughput_per_second"] = fields.number(throughput_key)
    if fields.has("output_throughput"):
        metrics["output_throughput_tokens_per_second"] = fields.number("output_throughput")
    goodput_key = next((k for k in ("request_goodput", "request_goodput:")
                        if fields.has(k)), None)
    if goodput_key is not None:
        goodput = fields.number(goodput_key)
        metrics["goodput_requests_per_second"] = goodput
        if requests.total:
            metrics["goodput_ratio"] = min(1.0, round(goodput * duration) / requests.total)
    if requests.failed is not None and requests.total:
        metrics["request_error_ratio"] = requests.failed / requests.total
    for name, value in metrics.items():
        if value < 0:
            raise InputError(f"{where}: {name} would be {value:g}: vLLM's figures are never "
                             "negative")
    return metrics
