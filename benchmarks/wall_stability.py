"""Wall-time stability: is the stored latency steadier across `run-once` invocations than a
bare perf_counter loop, and which defaults (threads, repetitions, window) get it there?

For each candidate setting (torch threads T, fresh-process repetitions R, measurement window
min_duration_s..max_duration_s) and each of two models from configs/default.yml (bert-tiny,
BertForSequenceClassification at sequence length 32; gpt2-tiny, GPT2LMHeadModel generating
16 new tokens after 64), the script runs, in every round:

  collector  one fresh `python -m collector run-once --format json --no-progress --no-confirm
             --local-store TMP/db.sqlite -c CONFIG` of a two-benchmark suite (bert-tiny,
             gpt2-tiny) with `threads: T` and `measurement: {repetitions: R, min_duration_s,
             max_duration_s}`; the stored `latency_p50_seconds` of each benchmark (the median
             of its R repetitions, interleaved A1 B1 A2 B2 ...) and each repetition's own p50;
  bare       per model, one fresh python process (this script with --bare-child) that builds
             the same synthetic model (same config, torch.manual_seed(0)), the inputs
             collector/adapters/measure/tasks/inputs.py builds (generator seeded 1234, ids in
             [4, vocab), an all-ones mask), sets torch threads T, calls the step once plus
             warmup_iterations times, then times `t0 = perf_counter_ns(); step(); t1 = ...`
             for R x max_duration_s of wall time (what the collector measures in total when
             every repetition runs to max_duration_s, as these models do on this host) and
             prints the median. The step is one forward under torch.inference_mode, or
             model.generate() with the generation config
             collector/adapters/measure/tasks/generation.py uses (greedy, min_new_tokens =
             max_new_tokens = 16), without the per-token clock.

Rounds alternate the order (bare first, then collector first, mirrored) and rotate the
candidates, so that a slow minute of the shared machine hits all of them. Reported per
candidate and model: each round's values, the run-to-run CV (stdev/mean over rounds) of the
collector's stored p50 and of the bare median, their ratio (goal <= 0.5), the ratio of
medians collector/bare (goal within 2 %), a paired bootstrap 95 % interval of both ratios
(resampling rounds), and the CV over rounds of other ways to combine the repetitions'
p50s (median, mean, min, 20 %-trimmed mean, geometric mean, first repetition alone, median
of the first three). A round is contaminated when the noise probe's other_cpu_fraction
(the collector's combined one, or the bare child's own) is >= 0.25 or a valgrind process was
running at its end; the figures are repeated over the clean rounds.

Without --candidates the plan is adaptive: threads 1 vs 2 at R=1 (the per-process noise that
threads change is plainest there), then R=3 and R=5 at the thread count with the lower
collector CV. Last, the wall time of one `run-once` of configs/default.yml with the chosen
defaults applied to a temporary copy (--budget-only does just that).

Before each measurement the script waits (polling every 10 s, at most 30 min) until
`pgrep -f valgrind` finds nothing: another job's valgrind runs would contaminate it.

    .venv/bin/python benchmarks/wall_stability.py [--rounds 10] [--candidates t1-r3-w0.5-1.5,...]
        [--budget-candidate t1-r3-w0.5-1.5] [--no-budget] [--budget-only] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "default.yml"
MODELS = ("bert-tiny", "gpt2-tiny")
CV_GOAL = 0.5  # CV collector / CV bare at most this
MEDIAN_GOAL = 0.02  # |median collector / median bare - 1| at most this
CONTAMINATED = 0.25  # other_cpu_fraction at or above this flags a round
BOOTSTRAP = 2000
VALGRIND_POLL_S = 10
VALGRIND_MAX_WAIT_S = 30 * 60
QUIET_PROBE_S = 2.0
QUIET_POLL_S = 3.0
QUIET_MAX_WAIT_S = 120.0
QUIET_MAX_WAIT_AFTER_GIVE_UP_S = 20.0  # while a neighbour keeps busy, don't stall every time
NAME = re.compile(r"^t(\d+)-r(\d+)-w([0-9.]+)-([0-9.]+)$")


@dataclass(frozen=True)
class Candidate:
    threads: int
    repetitions: int
    min_duration_s: float
    max_duration_s: float

    @property
    def name(self) -> str:
        return (f"t{self.threads}-r{self.repetitions}-w{self.min_duration_s:g}-"
                f"{self.max_duration_s:g}")

    @classmethod
    def parse(cls, text: str) -> Candidate:
        match = NAME.match(text.strip())
        if match is None:
            raise ValueError(f"candidate {text!r} is not of the form t2-r3-w0.5-1.5 "
                             "(threads, repetitions, min_duration_s, max_duration_s)")
        t, r, lo, hi = match.groups()
        cand = cls(int(t), int(r), float(lo), float(hi))
        if cand.threads < 1 or cand.repetitions < 1 or not 0 <= cand.min_duration_s <= \
                cand.max_duration_s or cand.max_duration_s <= 0:
            raise ValueError(f"candidate {text!r} is out of range")
        return cand


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Log:
    def __init__(self, to_stderr: bool) -> None:
        self.stream = sys.stderr if to_stderr else sys.stdout

    def __call__(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


# ---------------------------------------------------------------------------------------------
# Coordination with valgrind jobs of others


def valgrind_running() -> bool:
    proc = subprocess.run(["pgrep", "-f", "valgrind"],  # noqa: S607 - pgrep from PATH
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def wait_for_valgrind(log: Log) -> float:
    """Seconds waited until no valgrind process runs (at most VALGRIND_MAX_WAIT_S)."""
    started = time.monotonic()
    if not valgrind_running():
        return 0.0
    log("  waiting: a valgrind process is running (pgrep -f valgrind) ...")
    while valgrind_running():
        if time.monotonic() - started > VALGRIND_MAX_WAIT_S:
            log("  gave up waiting for valgrind after 30 min: measuring anyway "
                "(this measurement is flagged)")
            break
        time.sleep(VALGRIND_POLL_S)
    waited = time.monotonic() - started
    log(f"  waited {waited:.0f} s for valgrind to finish")
    return waited


def busy_cpu_seconds() -> float:
    """CPU time spent by everything on the machine (/proc/stat: user, nice, system, irq,
    softirq, steal), in seconds."""
    fields = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields]
    return sum(ticks[i] for i in (0, 1, 2, 5, 6, 7)) / os.sysconf("SC_CLK_TCK")


def others_busy(window_s: float = QUIET_PROBE_S) -> float:
    """Fraction of the machine's CPUs that other processes used over a short window (this
    script sleeps meanwhile)."""
    before, started = busy_cpu_seconds(), time.monotonic()
    time.sleep(window_s)
    wall = time.monotonic() - started
    return (busy_cpu_seconds() - before) / (wall * (os.cpu_count() or 1))


class QuietGate:
    """Before a measurement: wait for no valgrind process and, unless `below` is None, for
    the other processes' CPU use over a 2 s probe to fall under `below`. That second wait
    lasts at most QUIET_MAX_WAIT_S, and only QUIET_MAX_WAIT_AFTER_GIVE_UP_S after a wait
    that gave up, until a probe finds the machine quiet again (a neighbour that stays busy
    for an hour should flag the rounds, not stall each of them)."""

    def __init__(self, log: Log, below: float | None) -> None:
        self.log = log
        self.below = below
        self.gave_up = False
        self.gave_up_count = 0

    def __call__(self) -> float:
        """Seconds waited."""
        waited = wait_for_valgrind(self.log)
        if self.below is None:
            return waited
        started = time.monotonic()
        busy = others_busy()
        if busy < self.below:
            self.gave_up = False
            return waited
        limit = QUIET_MAX_WAIT_AFTER_GIVE_UP_S if self.gave_up else QUIET_MAX_WAIT_S
        self.log(f"  waiting: other processes use {busy:.0%} of the CPUs ...")
        while busy >= self.below:
            if time.monotonic() - started > limit:
                self.gave_up = True
                self.gave_up_count += 1
                self.log(f"  gave up waiting for a quiet machine after {limit:.0f} s")
                break
            time.sleep(QUIET_POLL_S)
            waited += wait_for_valgrind(self.log)
            busy = others_busy()
        else:
            self.gave_up = False
        quiet = time.monotonic() - started
        self.log(f"  waited {quiet:.0f} s for a quiet machine (other processes at {busy:.0%})")
        return waited + quiet


# ---------------------------------------------------------------------------------------------
# Configs


def default_config() -> dict[str, Any]:
    from ruamel.yaml import YAML

    data: dict[str, Any] = YAML(typ="safe").load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    return data


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    with path.open("w", encoding="utf-8") as stream:
        yaml.dump(data, stream)


def model_entries() -> dict[str, dict[str, Any]]:
    """bert-tiny (eager, seq 32) and gpt2-tiny as configs/default.yml defines them."""
    data = default_config()
    found: dict[str, dict[str, Any]] = {}
    for suite in data["suites"].values():
        for bench in suite["benchmarks"]:
            if bench["name"] in MODELS:
                found[bench["name"]] = bench
    missing = [m for m in MODELS if m not in found]
    if missing:
        raise SystemExit(f"{DEFAULT_CONFIG} defines no {', '.join(missing)}")
    bert = {"name": "bert-tiny", "model": found["bert-tiny"]["model"], "sequence_length": 32,
            "backend": "eager"}
    gpt2 = {k: v for k, v in found["gpt2-tiny"].items() if k != "matrix"}
    return {"bert-tiny": bert, "gpt2-tiny": gpt2}


def base_defaults() -> dict[str, Any]:
    data = default_config()
    return copy.deepcopy(data.get("defaults", {}))


def measurement_for(cand: Candidate, defaults: dict[str, Any]) -> dict[str, Any]:
    measurement = dict(defaults.get("measurement", {}))
    measurement.update(min_duration_s=cand.min_duration_s, max_duration_s=cand.max_duration_s,
                       repetitions=cand.repetitions)
    return measurement


def suite_config(cand: Candidate, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    defaults = base_defaults()
    defaults["threads"] = cand.threads
    defaults["measurement"] = measurement_for(cand, defaults)
    return {"version": 1, "suites": {"wall": {
        "description": "bert-tiny (seq 32) and gpt2-tiny from configs/default.yml",
        "defaults": defaults, "benchmarks": [entries[m] for m in MODELS]}}}


def budget_config(cand: Candidate) -> dict[str, Any]:
    data = default_config()
    defaults = data.setdefault("defaults", {})
    defaults["threads"] = cand.threads
    defaults["measurement"] = measurement_for(cand, defaults)
    return data


# ---------------------------------------------------------------------------------------------
# The bare loop (runs in a child process: this script with --bare-child SPEC_JSON)


def bare_child(spec: dict[str, Any]) -> int:
    import torch
    import transformers

    from collector.adapters.host import NoiseMeter

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(spec["threads"])
    model_spec = spec["model"]
    cls = getattr(transformers, model_spec["architecture"])
    torch.manual_seed(model_spec.get("seed", 0))
    model = cls(cls.config_class(**model_spec["config"]))
    model.eval()
    # As collector/adapters/measure/tasks/inputs.py: a generator seeded 1234, ids in [4, vocab).
    gen = torch.Generator().manual_seed(1234)
    batch, length = spec["batch_size"], spec["sequence_length"]
    vocab = int(model.config.vocab_size)
    ids = torch.randint(min(4, vocab - 1), vocab, (batch, length), generator=gen)
    inputs = {"input_ids": ids, "attention_mask": torch.ones((batch, length), dtype=torch.long)}

    step: Callable[[], Any]
    if spec["generate"]:
        # As collector/adapters/measure/tasks/generation.py, without its per-token StoppingCriteria.
        config = copy.deepcopy(model.generation_config)
        config.update(max_new_tokens=spec["new_tokens"], min_new_tokens=spec["new_tokens"],
                      do_sample=False, num_beams=1, max_length=None, min_length=None)
        if config.pad_token_id is None:
            config.pad_token_id = config.eos_token_id if config.eos_token_id is not None else 0

        def step() -> Any:
            with torch.inference_mode():
                return model.generate(**inputs, generation_config=config)
    else:
        def step() -> Any:
            with torch.inference_mode():
                return model(**inputs)

    for _ in range(1 + spec["warmup_iterations"]):  # the collector's first call + warm-up
        step()
    meter = NoiseMeter().start()
    samples: list[int] = []
    start = time.perf_counter_ns()
    deadline = start + int(spec["budget_s"] * 1e9)
    while True:
        t0 = time.perf_counter_ns()
        step()
        t1 = time.perf_counter_ns()
        samples.append(t1 - t0)
        if t1 >= deadline:
            break
    duration = (time.perf_counter_ns() - start) / 1e9
    noise = meter.stop()
    if spec["generate"]:
        out = step()
        assert out.shape[1] == length + spec["new_tokens"], out.shape
    print(json.dumps({"median_s": statistics.median(samples) / 1e9, "iterations": len(samples),
                      "duration_s": duration, "other_cpu_fraction": noise.other_cpu_fraction,
                      "torch_threads": torch.get_num_threads()}))
    return 0


def bare_spec(entry: dict[str, Any], cand: Candidate, defaults: dict[str, Any]
              ) -> dict[str, Any]:
    generate = entry["model"]["architecture"].endswith("LMHeadModel") or "new_tokens" in entry
    warmup = int(defaults.get("measurement", {}).get("warmup_iterations", 3))
    return {"model": entry["model"], "generate": generate,
            "sequence_length": int(entry.get("sequence_length", 128)),
            "batch_size": int(entry.get("batch_size", 1)),
            "new_tokens": int(entry.get("new_tokens", 32)), "threads": cand.threads,
            "warmup_iterations": warmup,
            "budget_s": cand.repetitions * cand.max_duration_s}


def run_bare(spec: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--bare-child", json.dumps(spec)]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"bare loop exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    body: dict[str, Any] = json.loads(lines[-1])
    body["wall_s"] = wall
    return body


# ---------------------------------------------------------------------------------------------
# The collector


def run_collector(config_path: Path, store: Path) -> tuple[dict[str, Any], float]:
    command = [sys.executable, "-m", "collector", "run-once", "--config", str(config_path),
               "--format", "json", "--no-progress", "--no-confirm", "--local-store", str(store)]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - started
    try:
        document: dict[str, Any] = json.loads(proc.stdout)
        if not isinstance(document.get("runs"), list):
            raise KeyError("runs")
    except (json.JSONDecodeError, KeyError) as exc:
        raise SystemExit(f"run-once exited {proc.returncode} without a results document "
                         f"({exc}):\n{proc.stderr[-2000:]}") from None
    return document, wall


def collector_point(result: dict[str, Any]) -> dict[str, Any]:
    if result["status"] != "ok":
        raise SystemExit(f"benchmark {result['spec']['name']} failed: {result['failure']}")
    reps = result.get("repetitions") or []
    if reps:
        rep_p50 = [r["metrics"]["latency_p50_seconds"] for r in reps]
        rep_other = [r["noise"]["other_cpu_fraction"] for r in reps]
        rep_duration = [r["measurement"]["duration_s"] for r in reps]
        rep_stops = [r["measurement"]["stop_reason"] for r in reps]
    else:  # one repetition is stored as it is
        rep_p50 = [result["metrics"]["latency_p50_seconds"]]
        rep_other = [result["noise"]["other_cpu_fraction"]]
        rep_duration = [result["measurement"]["duration_s"]]
        rep_stops = [result["measurement"]["stop_reason"]]
    measurement = result["measurement"]
    stored = result["metrics"]["latency_p50_seconds"]
    check = combine_median(rep_p50)
    if not math.isclose(stored, check, rel_tol=1e-9):
        raise SystemExit(f"stored p50 {stored} is not the median of the repetitions' {rep_p50}")
    return {"p50_s": stored, "rep_p50_s": rep_p50, "rep_other_cpu_fraction": rep_other,
            "rep_duration_s": rep_duration, "rep_stop_reason": rep_stops,
            "other_cpu_fraction": result["noise"]["other_cpu_fraction"],
            "measured_s": measurement["duration_s"],
            "achieved_rel_ci": measurement["achieved_rel_ci"],
            "within_rel_ci": measurement.get("within_rel_ci"),
            "between_rel_sd": measurement.get("between_rel_sd"),
            "threads": result["environment"].get("torch_threads")}


# ---------------------------------------------------------------------------------------------
# Statistics


def combine_median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n, mid = len(ordered), len(ordered) // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def trimmed_mean(values: Sequence[float], cut: float = 0.2) -> float:
    ordered = sorted(values)
    k = int(cut * len(ordered))
    return statistics.fmean(ordered[k:len(ordered) - k])


ESTIMATORS: dict[str, Callable[[Sequence[float]], float]] = {
    "median": combine_median,
    "mean": statistics.fmean,
    "min": min,
    "trimmed20": trimmed_mean,
    "geomean": statistics.geometric_mean,
    "first": lambda v: v[0],
    "median_first3": lambda v: combine_median(v[:3]),
}


def cv(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    return statistics.stdev(values) / statistics.fmean(values)


def percentile(ordered: Sequence[float], q: float) -> float:
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def compare(collector: Sequence[float], bare: Sequence[float], seed: int) -> dict[str, Any]:
    """CVs, their ratio, the ratio of medians and paired bootstrap intervals of both."""
    n = len(collector)
    out: dict[str, Any] = {"rounds": n, "cv_collector": cv(collector), "cv_bare": cv(bare),
                           "cv_ratio": None, "median_ratio": None}
    if n == 0:
        return out
    out["median_collector_s"] = statistics.median(collector)
    out["median_bare_s"] = statistics.median(bare)
    out["median_ratio"] = out["median_collector_s"] / out["median_bare_s"]
    ratios = [c / b for c, b in zip(collector, bare, strict=True)]
    out["round_ratio_min"], out["round_ratio_max"] = min(ratios), max(ratios)
    if n < 2:
        return out
    out["cv_ratio"] = out["cv_collector"] / out["cv_bare"] if out["cv_bare"] else None
    logs = [math.log(r) for r in ratios]
    out["paired_geomean_ratio"] = math.exp(statistics.fmean(logs))
    out["paired_half_width_95"] = math.exp(2 * statistics.stdev(logs) / math.sqrt(n)) - 1
    rng = random.Random(seed)  # noqa: S311 - a seeded bootstrap, nothing secret
    cv_ratios: list[float] = []
    med_ratios: list[float] = []
    for _ in range(BOOTSTRAP):
        idx = [rng.randrange(n) for _ in range(n)]
        c = [collector[i] for i in idx]
        b = [bare[i] for i in idx]
        cb = cv(b)
        if cb:
            cv_ratios.append((cv(c) or 0.0) / cb)
        med_ratios.append(statistics.median(c) / statistics.median(b))
    cv_ratios.sort()
    med_ratios.sort()
    if cv_ratios:
        out["cv_ratio_ci95"] = [percentile(cv_ratios, 0.025), percentile(cv_ratios, 0.975)]
    out["median_ratio_ci95"] = [percentile(med_ratios, 0.025), percentile(med_ratios, 0.975)]
    return out


def estimator_cvs(points: Sequence[dict[str, Any]], bare: Sequence[float]) -> dict[str, Any]:
    reps = min(len(p["rep_p50_s"]) for p in points) if points else 0
    out: dict[str, Any] = {}
    cv_bare = cv(bare)
    for name, fn in ESTIMATORS.items():
        if name == "median_first3" and reps < 5:
            continue
        values = [fn(p["rep_p50_s"]) for p in points]
        out[name] = {"cv": cv(values),
                     "cv_ratio": (cv(values) or 0.0) / cv_bare if cv_bare else None,
                     "median_ratio": (statistics.median(values) / statistics.median(bare)
                                      if values else None)}
    return out


# ---------------------------------------------------------------------------------------------
# Rounds


def run_rounds(cands: Sequence[Candidate], rounds: int, tmp: Path, log: Log, *,
               phase: str, gate: QuietGate) -> dict[str, list[dict[str, Any]]]:
    entries = model_entries()
    defaults = base_defaults()
    configs: dict[str, Path] = {}
    for cand in cands:
        path = tmp / f"{cand.name}.yml"
        write_yaml(path, suite_config(cand, entries))
        configs[cand.name] = path
    records: dict[str, list[dict[str, Any]]] = {c.name: [] for c in cands}
    log(f"phase {phase}: {', '.join(c.name for c in cands)}, {rounds} rounds")
    for index in range(rounds):
        order = list(cands[index % len(cands):]) + list(cands[:index % len(cands)])
        for k, cand in enumerate(order):
            bare_first = (index + k) % 2 == 0
            models = list(MODELS) if bare_first else list(reversed(MODELS))
            rec: dict[str, Any] = {"round": index + 1, "order": "bare-first" if bare_first
                                   else "collector-first", "loadavg_start": loadavg(),
                                   "waited_s": 0.0, "bare": {}}

            def do_bare(rec: dict[str, Any] = rec, cand: Candidate = cand,
                        models: list[str] = models) -> None:
                for model in models:
                    rec["waited_s"] += gate()
                    rec["bare"][model] = run_bare(bare_spec(entries[model], cand, defaults))

            def do_collector(rec: dict[str, Any] = rec, cand: Candidate = cand) -> None:
                rec["waited_s"] += gate()
                store = tmp / f"db-{cand.name}-{rec['round']}.sqlite"
                document, wall = run_collector(configs[cand.name], store)
                results = {r["spec"]["name"]: r for run in document["runs"]
                           for r in run["results"]}
                rec["collector_wall_s"] = wall
                rec["collector"] = {m: collector_point(results[m]) for m in MODELS}

            if bare_first:
                do_bare()
                do_collector()
            else:
                do_collector()
                do_bare()
            rec["valgrind_at_end"] = valgrind_running()
            rec["loadavg_end"] = loadavg()
            fractions = ([rec["collector"][m]["other_cpu_fraction"] for m in MODELS]
                         + [rec["bare"][m]["other_cpu_fraction"] for m in MODELS])
            rec["max_other_cpu_fraction"] = max(fractions)
            rec["contaminated"] = rec["max_other_cpu_fraction"] >= CONTAMINATED or \
                rec["valgrind_at_end"]
            records[cand.name].append(rec)
            parts = []
            for m in MODELS:
                c, b = rec["collector"][m], rec["bare"][m]
                parts.append(f"{m} collector {c['p50_s'] * 1e3:.3f} ms (reps "
                             f"{'/'.join(f'{v * 1e3:.3f}' for v in c['rep_p50_s'])}, other "
                             f"{c['other_cpu_fraction']:.2f}) bare {b['median_s'] * 1e3:.3f} ms "
                             f"(n={b['iterations']}, other {b['other_cpu_fraction']:.2f})")
            flag = "  CONTAMINATED" if rec["contaminated"] else ""
            log(f"round {index + 1:2d} {cand.name} {rec['order']:15s} "
                f"run-once {rec['collector_wall_s']:.1f} s; " + "; ".join(parts)
                + f"; load {rec['loadavg_end'][0]}{flag}")
    return records


def summarize(cand: Candidate, recs: Sequence[dict[str, Any]], seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"candidate": cand.name, "threads": cand.threads,
                           "repetitions": cand.repetitions,
                           "min_duration_s": cand.min_duration_s,
                           "max_duration_s": cand.max_duration_s,
                           "bare_budget_s": cand.repetitions * cand.max_duration_s,
                           "rounds": list(recs), "models": {}}
    clean = [r for r in recs if not r["contaminated"]]
    out["contaminated_rounds"] = [r["round"] for r in recs if r["contaminated"]]
    out["collector_wall_s_median"] = statistics.median(r["collector_wall_s"] for r in recs)
    for j, model in enumerate(MODELS):
        points = [r["collector"][model] for r in recs]
        coll = [p["p50_s"] for p in points]
        bare = [r["bare"][model]["median_s"] for r in recs]
        fig = compare(coll, bare, seed + j)
        fig["collector_p50_s"] = coll
        fig["bare_median_s"] = bare
        fig["estimators"] = estimator_cvs(points, bare)
        fig["collector_measured_s_median"] = statistics.median(p["measured_s"] for p in points)
        fig["stop_reasons"] = sorted({s for p in points for s in p["rep_stop_reason"]})
        fig["bare_iterations_median"] = statistics.median(r["bare"][model]["iterations"]
                                                          for r in recs)
        fig["other_cpu_fraction_collector"] = [p["other_cpu_fraction"] for p in points]
        fig["other_cpu_fraction_bare"] = [r["bare"][model]["other_cpu_fraction"] for r in recs]
        fig["clean"] = (compare([r["collector"][model]["p50_s"] for r in clean],
                                [r["bare"][model]["median_s"] for r in clean], seed + 10 + j)
                        if len(clean) >= 3 else None)
        fig["cv_goal_met"] = fig["cv_ratio"] is not None and fig["cv_ratio"] <= CV_GOAL
        fig["median_goal_met"] = (fig["median_ratio"] is not None
                                  and abs(fig["median_ratio"] - 1) <= MEDIAN_GOAL)
        out["models"][model] = fig
    return out


def score(summary: dict[str, Any]) -> float:
    """Lower is better: the collector's run-to-run CV, averaged over the models."""
    return statistics.fmean(summary["models"][m]["cv_collector"] or math.inf for m in MODELS)


# ---------------------------------------------------------------------------------------------
# Budget: the default suite with candidate defaults


def span(item: dict[str, Any]) -> float:
    """Seconds from started_at to finished_at of a result or repetition."""
    def when(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (when(item["finished_at"]) - when(item["started_at"])).total_seconds()


def measure_budget(cand: Candidate, tmp: Path, log: Log, gate: QuietGate) -> dict[str, Any]:
    path = tmp / f"default-{cand.name}.yml"
    write_yaml(path, budget_config(cand))
    waited = gate()
    load_start = loadavg()
    log(f"budget: run-once of {DEFAULT_CONFIG.relative_to(ROOT)} with defaults threads "
        f"{cand.threads}, repetitions {cand.repetitions}, min_duration_s "
        f"{cand.min_duration_s:g}, max_duration_s {cand.max_duration_s:g} ...")
    document, wall = run_collector(path, tmp / f"db-budget-{cand.name}.sqlite")
    results = [r for run in document["runs"] for r in run["results"]]
    failed = [r["spec"]["name"] for r in results if r["status"] != "ok"]
    rows = [{"name": r["spec"]["name"], "backend": r["spec"]["backend"],
             "sequence_length": r["spec"]["sequence_length"], "status": r["status"],
             "wall_s": sum(span(x) for x in (r.get("repetitions") or [r])),
             "measured_s": (r["measurement"] or {}).get("duration_s"),
             "first_call_s": r["metrics"].get("first_call_seconds"),
             "other_cpu_fraction": (r["noise"] or {}).get("other_cpu_fraction")}
            for r in results]
    out: dict[str, Any] = {"candidate": cand.name, "wall_s": wall, "benchmarks": len(results),
           "failed": failed, "waited_s": waited, "loadavg_start": load_start,
           "loadavg_end": loadavg(), "valgrind_at_end": valgrind_running(), "results": rows,
           "within_180_s": wall <= 180}
    log(f"budget: {wall:.1f} s for {len(results)} benchmarks ({len(failed)} failed), load "
        f"{load_start[0]} -> {out['loadavg_end'][0]}")
    return out


# ---------------------------------------------------------------------------------------------
# Output


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def interval(x: Sequence[float] | None) -> str:
    return "-" if not x else f"[{x[0]:.3f}, {x[1]:.3f}]"


def print_summary(s: dict[str, Any]) -> None:
    print(f"\n{s['candidate']}: threads {s['threads']}, R={s['repetitions']}, window "
          f"{s['min_duration_s']:g}-{s['max_duration_s']:g} s, bare budget "
          f"{s['bare_budget_s']:g} s, run-once median {s['collector_wall_s_median']:.1f} s, "
          f"contaminated rounds {s['contaminated_rounds'] or 'none'}")
    for model, f in s["models"].items():
        print(f"  {model}: collector p50 (ms) "
              f"{', '.join(f'{v * 1e3:.3f}' for v in f['collector_p50_s'])}")
        print(f"  {model}: bare median (ms)  "
              f"{', '.join(f'{v * 1e3:.3f}' for v in f['bare_median_s'])}")
        print(f"  {model}: CV collector {pct(f['cv_collector'])}, CV bare {pct(f['cv_bare'])}, "
              f"ratio {num(f['cv_ratio'])} {interval(f.get('cv_ratio_ci95'))} "
              f"(goal <= {CV_GOAL}: {'met' if f['cv_goal_met'] else 'NOT met'}); medians "
              f"collector/bare {num(f['median_ratio'], 4)} "
              f"{interval(f.get('median_ratio_ci95'))} (goal +/-{MEDIAN_GOAL:.0%}: "
              f"{'met' if f['median_goal_met'] else 'NOT met'}); paired geomean "
              f"{num(f.get('paired_geomean_ratio'), 4)} +/- {pct(f.get('paired_half_width_95'))}")
        est = ", ".join(f"{k} {pct(v['cv'])}" for k, v in f["estimators"].items())
        print(f"  {model}: CV by combination of the repetitions: {est}")
        print(f"  {model}: measured per point {f['collector_measured_s_median']:.2f} s "
              f"(stops: {', '.join(f['stop_reasons'])}), bare n={f['bare_iterations_median']}; "
              f"other_cpu_fraction collector "
              f"{', '.join(f'{v:.2f}' for v in f['other_cpu_fraction_collector'])}")
        c = f["clean"]
        if c is not None and c["rounds"] < len(f["collector_p50_s"]):
            print(f"  {model}: clean rounds only ({c['rounds']}): CV collector "
                  f"{pct(c['cv_collector'])}, CV bare {pct(c['cv_bare'])}, ratio "
                  f"{num(c['cv_ratio'])}, medians {num(c['median_ratio'], 4)}")


def build_result(args: argparse.Namespace, summaries: list[dict[str, Any]],
                 phases: list[dict[str, Any]], budget: dict[str, Any] | None, *,
                 gate: QuietGate, load_start: list[float], started: float) -> dict[str, Any]:
    return {
        "benchmark": "wall_stability",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rounds": args.rounds,
        "phases": phases,
        "candidates": summaries,
        "best_by_collector_cv": min(summaries, key=score)["candidate"] if summaries else None,
        "budget": budget,
        "quiet_below": args.quiet_below,
        "quiet_wait_gave_up": gate.gave_up_count,
        "goals": {"cv_ratio_max": CV_GOAL, "median_ratio_within": MEDIAN_GOAL,
                  "budget_s": 180, "contaminated_at_other_cpu_fraction": CONTAMINATED},
        "elapsed_s": time.monotonic() - started,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
    }


def run_plan(args: argparse.Namespace, cands: list[Candidate] | None,
             budget_cand: Candidate | None, window: list[float], log: Log
             ) -> dict[str, Any]:
    """The rounds of every phase, then the budget run; with --save, the figures so far are
    written after each phase."""
    load_start, started = loadavg(), time.monotonic()
    gate = QuietGate(log, args.quiet_below)
    summaries: list[dict[str, Any]] = []
    phases: list[dict[str, Any]] = []
    budget: dict[str, Any] | None = None

    def save() -> dict[str, Any]:
        result = build_result(args, summaries, phases, budget, gate=gate,
                              load_start=load_start, started=started)
        if args.save:
            Path(args.save).write_text(json.dumps(result, indent=2), encoding="utf-8")
        return result

    with tempfile.TemporaryDirectory(prefix="collector-wall-") as tmpdir:
        tmp = Path(tmpdir)
        plan: list[tuple[str, list[Candidate]]] = []
        if not args.budget_only:
            lo, hi = window
            plan = ([("given", cands)] if cands is not None
                    else [("threads", [Candidate(1, 1, lo, hi), Candidate(2, 1, lo, hi)])])
        while plan:
            name, group = plan.pop(0)
            records = run_rounds(group, args.rounds, tmp, log, phase=name, gate=gate)
            done = [summarize(c, records[c.name], args.seed + 100 * len(summaries))
                    for c in group]
            summaries.extend(done)
            phases.append({"phase": name, "candidates": [c.name for c in group]})
            if name == "threads":
                best = min(done, key=score)
                reason = (f"threads {best['threads']}: mean collector CV {score(best):.2%} vs "
                          + ", ".join(f"threads {s['threads']}: {score(s):.2%}" for s in done
                                      if s is not best))
                phases[-1]["choice"] = reason
                log(f"phase threads: chose {reason}")
                t = best["threads"]
                plan.append(("repetitions", [Candidate(t, 3, lo, hi), Candidate(t, 5, lo, hi)]))
            save()
        if budget_cand is None and summaries:
            budget_cand = Candidate.parse(min(summaries, key=score)["candidate"])
        if budget_cand is not None and not args.no_budget:
            budget = measure_budget(budget_cand, tmp, log, gate)
    return save()


def print_text(result: dict[str, Any]) -> None:
    for phase in result["phases"]:
        if "choice" in phase:
            print(f"phase {phase['phase']}: chose {phase['choice']}")
    for summary in result["candidates"]:
        print_summary(summary)
    if result["candidates"]:
        print(f"\nbest by mean collector CV: {result['best_by_collector_cv']}")
    budget = result["budget"]
    if budget is not None:
        print(f"budget: default suite with {budget['candidate']} defaults: "
              f"{budget['wall_s']:.1f} s for {budget['benchmarks']} benchmarks, "
              f"{len(budget['failed'])} failed "
              f"(goal <= 180 s: {'met' if budget['within_180_s'] else 'NOT met'})")
    print(f"elapsed {result['elapsed_s'] / 60:.1f} min; load average (1/5/15 min): start "
          f"{result['loadavg_start']}, end {result['loadavg_end']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bare-child", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=10, help="rounds per phase (default 10)")
    parser.add_argument("--candidates", help="comma-separated candidates measured together "
                        "(interleaved), e.g. t1-r3-w0.5-1.5,t2-r3-w0.5-1.5; default: the "
                        "adaptive plan (threads at R=1, then R=3 and R=5)")
    parser.add_argument("--window", default="0.5-1.5",
                        help="min-max window of the adaptive plan (default 0.5-1.5)")
    parser.add_argument("--budget-candidate", help="candidate whose defaults the budget run "
                        "applies (default: the best measured by collector CV)")
    parser.add_argument("--no-budget", action="store_true", help="skip the budget run")
    parser.add_argument("--budget-only", action="store_true",
                        help="only the budget run (needs --budget-candidate)")
    parser.add_argument("--quiet-below", type=float, default=CONTAMINATED, metavar="FRACTION",
                        help="before each measurement also wait (at most 10 min) until other "
                             "processes use less than this fraction of the CPUs over a 2 s "
                             f"probe (default {CONTAMINATED})")
    parser.add_argument("--no-quiet-wait", dest="quiet_below", action="store_const",
                        const=None, help="wait only for valgrind processes to end")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--save", metavar="FILE.json",
                        help="also write the JSON figures to this file, after every phase")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.bare_child is not None:
        return bare_child(json.loads(args.bare_child))
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    try:
        cands = ([Candidate.parse(c) for c in args.candidates.split(",")]
                 if args.candidates else None)
        budget_cand = (Candidate.parse(args.budget_candidate) if args.budget_candidate
                       else None)
        window = [float(x) for x in args.window.split("-")]
        Candidate.parse(f"t1-r1-w{args.window}")
    except ValueError as exc:
        parser.error(str(exc))
    if args.budget_only and budget_cand is None:
        parser.error("--budget-only needs --budget-candidate")
    log = Log(args.json)
    result = run_plan(args, cands, budget_cand, window, log)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_text(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
