"""`collector ab`, `collector bisect` and `collector rerun` (docs/ab-and-bisect.md).

ab: one benchmark of the config in two package environments, interleaved rounds, printed
as `collector compare` prints (table, JSON, Markdown) with the A/B summary line.
bisect: the first released version of a package (or of several) that is worse.
rerun: a stored run's results measured again now, compared with their stored values.

Exit codes, beyond the CLI's (0 ok, 2 invalid command line or config, 4 store):
  1  the A/B could not be measured: an environment could not be built, or a side's run
     failed (bisect: the bad end could not be measured; rerun: its environment)
  5  ab/rerun with --fail-on-regression: B (the candidate, the rerun) is judged worse
  6  bisect: no effect between the ends (bad is not worse than good)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.cli.compare import EXIT_REGRESSION, print_comparison, regressed
from collector.domain.errors import SelectionError, command_line_problem

if TYPE_CHECKING:  # the commands' own imports wait until they run: the CLI starts fast
    from rich.console import Console

    from collector.adapters.envs import BuiltEnvironment, EnvironmentCache, Pin
    from collector.domain.history import Store
    from collector.domain.model import BenchmarkResult, BenchmarkSpec
    from collector.usecases.ab import AbResult
    from collector.usecases.bisect import Step
    from collector.usecases.rerun import RerunResult

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NO_EFFECT = 6
DEFAULT_ROUNDS = 3
AB_FORMAT = "collector-ab"
BISECT_FORMAT = "collector-bisect"
FORMAT_VERSION = 1


def _environment_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-cache", metavar="DIR",
                        help="where built environments are kept (default: "
                             "$COLLECTOR_ENV_CACHE, else ~/.cache/collector/envs)")
    parser.add_argument("--find-links", action="append", default=[], metavar="DIR",
                        help="pip --find-links: a directory (or URL) of wheels (repeatable)")
    parser.add_argument("--index-url", metavar="URL", help="pip --index-url")
    parser.add_argument("--no-index", action="store_true",
                        help="pip --no-index: only --find-links (no network)")
    parser.add_argument("--isolation", choices=("forkserver", "spawn"), default="forkserver",
                        help="how workers start in each environment")
    parser.add_argument("--host", help="host name recorded in results")


def _measuring_options(parser: argparse.ArgumentParser, default_config: str) -> None:
    parser.add_argument("benchmark", metavar="BENCHMARK",
                        help="the benchmark's name in the config (a glob matching one)")
    parser.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                        help="pick one benchmark of a matrix by a field (repeatable), e.g. "
                             "--where sequence_length=32 --where backend=eager")
    parser.add_argument("--config", "-c", default=default_config, help="configuration file")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, metavar="N",
                        help="rounds of A and B, each the benchmark's own repetitions in "
                             f"fresh processes (default {DEFAULT_ROUNDS}; at least 2 for an "
                             "interval over runs)")
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="stop after the round that a further round would take past "
                             "this (builds included; never before 2 rounds)")
    parser.add_argument("--metric", help="the metric the verdict and summary use (default: "
                                         "the result's headline metric)")
    parser.add_argument("--threshold", type=float, metavar="F",
                        help="smallest relative change that counts (default: the detector's "
                             "minimum effect of each metric)")
    _environment_options(parser)


def add_parsers(commands: Any, default_config: str) -> None:
    ab = commands.add_parser("ab", help="one benchmark in two package environments, "
                                        "interleaved: ratio, 95%% interval and verdict")
    _measuring_options(ab, default_config)
    ab.add_argument("--a", nargs="+", default=[], metavar="PIN",
                    help="side A's pins (the baseline), NAME==VERSION ... (none: this "
                         "interpreter's packages)")
    ab.add_argument("--b", nargs="+", default=[], metavar="PIN",
                    help="side B's pins (the candidate), as --a")
    ab.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    ab.add_argument("--fail-on-regression", nargs="?", type=float, const=0.0, default=None,
                    metavar="F", help=f"exit {EXIT_REGRESSION} when B is judged worse (by at "
                                      "least F, e.g. 0.05, when given)")

    bisect = commands.add_parser("bisect", help="the first released version of a package "
                                                "that makes a benchmark worse")
    _measuring_options(bisect, default_config)
    bisect.add_argument("--package", action="append", default=[], metavar="NAME",
                        help="a package that changed (repeatable, each with --good/--bad)")
    bisect.add_argument("--good", action="append", default=[], metavar="VERSION",
                        help="the package's last known good version")
    bisect.add_argument("--bad", action="append", default=[], metavar="VERSION",
                        help="the package's known bad version")
    bisect.add_argument("--format", choices=("table", "json"), default="table",
                        help="steps and result as text (default) or one JSON document")

    rerun = commands.add_parser("rerun", help="measure a stored run's results again now "
                                              "and compare them with the stored values")
    rerun.add_argument("run_id", metavar="RUN_ID", help="a stored run's id (or a prefix)")
    rerun.add_argument("--benchmark", "-b", metavar="NAME",
                       help="only the results whose benchmark name matches this glob")
    rerun.add_argument("--same-environment", action="store_true",
                       help="in an environment pinned to the package versions the stored "
                            "result recorded (built with pip, cached)")
    rerun.add_argument("--config", "-c", default=default_config,
                       help="configuration file for its storage section")
    rerun.add_argument("--local-store", metavar="PATH", help="SQLite file of the local store")
    rerun.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    rerun.add_argument("--fail-on-regression", nargs="?", type=float, const=0.0,
                       default=None, metavar="F",
                       help=f"exit {EXIT_REGRESSION} when the rerun is judged worse than the "
                            "stored value")
    _environment_options(rerun)


# -- shared ------------------------------------------------------------------------------

def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def _say(text: str, style: str | None = None) -> None:
    _err().print(text, style=style, markup=False)


def pip_args(args: argparse.Namespace) -> list[str]:
    """pip arguments from --index-url, --no-index and --find-links."""
    found: list[str] = []
    if args.index_url:
        found += ["--index-url", args.index_url]
    if args.no_index:
        found.append("--no-index")
    for link in args.find_links:
        if "://" not in link and not Path(link).is_dir():
            raise command_line_problem("--find-links", f"{link}: no such directory")
        found += ["--find-links", str(Path(link).absolute()) if "://" not in link else link]
    return found


def _cache(args: argparse.Namespace) -> EnvironmentCache:
    from collector.adapters.envs import EnvironmentCache

    return EnvironmentCache(Path(args.env_cache) if args.env_cache else None,
                            pip_args=pip_args(args))


def _where(texts: list[str]) -> dict[str, str]:
    """--where FIELD=VALUE items, the fields checked against the spec's."""
    from collector.domain.model import BenchmarkSpec

    wanted: dict[str, str] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise command_line_problem("--where", f"expected FIELD=VALUE, got {text!r}")
        if key not in BenchmarkSpec.model_fields or key == "model":
            raise command_line_problem("--where", f"unknown field {key!r}: use a benchmark "
                                       "field such as sequence_length, batch_size, backend, "
                                       "dtype or device")
        wanted[key] = value.strip()
    return wanted


def select_spec(config_path: str, pattern: str, where: list[str] | None = None
                ) -> BenchmarkSpec:
    """Exactly one benchmark of the config: its name matches the glob `pattern` and its
    fields the `where` items (FIELD=VALUE: a matrix expands one name into several)."""
    from collector.adapters.config import load_config
    from collector.usecases.cycle import Selection

    wanted = _where(where or [])
    config = load_config(config_path)
    suites = Selection(None, [pattern]).apply(config)
    specs = [b for s in suites for b in s.benchmarks]
    chosen = [s for s in specs if all(str(s.model_dump(mode="json")[k]) == v
                                      for k, v in wanted.items())]
    if not chosen:
        raise SelectionError(f"no benchmark matching {pattern} has "
                             f"{', '.join(f'{k}={v}' for k, v in wanted.items())}")
    if len(chosen) > 1:
        names = "; ".join(f"{s.suite}/{s.label}" for s in chosen[:10])
        raise SelectionError(f"{pattern} matches {len(chosen)} benchmarks ({names}"
                             f"{'; ...' if len(chosen) > 10 else ''}): name exactly one, "
                             "with --where FIELD=VALUE for a matrix (e.g. --where "
                             "sequence_length=32 --where backend=eager)")
    return chosen[0]


def _check_measuring(args: argparse.Namespace) -> None:
    from collector.domain.catalogue import METRICS

    if args.rounds < 1:
        raise command_line_problem("--rounds", "at least 1 round (2 or more for an interval "
                                               "over runs)")
    if args.budget is not None and args.budget <= 0:
        raise command_line_problem("--budget", "expected a positive number of seconds")
    if args.metric is not None and args.metric not in METRICS:
        raise command_line_problem("--metric", f"unknown metric {args.metric!r}")
    if args.threshold is not None and not 0 <= args.threshold < 10:
        raise command_line_problem("--threshold", "expected a relative change such as 0.05")


def _pins(texts: list[str]) -> tuple[Pin, ...]:
    from collector.adapters.envs import parse_pins

    return parse_pins(texts)


def _rejudged(result: AbResult, args: argparse.Namespace) -> AbResult:
    """The A/B's comparison with the command line's metric and threshold."""
    import dataclasses

    from collector.analysis.compare import compare

    if args.threshold is None and args.metric is None:
        return result
    comparison = compare(result.results_a, result.results_b, threshold=args.threshold,
                         metrics=[args.metric] if args.metric else None)
    return dataclasses.replace(result, comparison=comparison)


class _Progress:
    """Each environment as it is built and each round as it ends, on stderr."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def built(self, side: str, env: BuiltEnvironment) -> None:
        what = " ".join(str(p) for p in env.pins) or "this interpreter"
        how = "found in the cache" if env.cache_hit else "built"
        _say(f"  environment {side.upper()} ({what}): {how} in {env.build_s:.1f} s")
        self.last = time.monotonic()

    def round(self, number: int, a: BenchmarkResult, b: BenchmarkResult) -> None:
        from collector.analysis.compare import value_text
        from collector.domain.catalogue import headline

        values = []
        for name, result in (("A", a), ("B", b)):
            if result.status != "ok":
                values.append(f"{name} failed")
                continue
            metric = headline(result.metrics)
            values.append(f"{name} {value_text(metric, result.metrics[metric])}")
        now = time.monotonic()
        _say(f"  round {number}: {', '.join(values)} [{now - self.last:.1f} s]")
        self.last = now


# -- ab ------------------------------------------------------------------------------------

def _measure_ab(args: argparse.Namespace, spec: BenchmarkSpec, a: tuple[Pin, ...],
                b: tuple[Pin, ...], cache: EnvironmentCache) -> AbResult:
    from collector.usecases.ab import run_ab, side_label

    _say(f"A/B of {spec.suite}/{spec.label}: A = {side_label(a, b)}, B = "
         f"{side_label(b, a)}; up to {args.rounds} round(s), the first side alternating "
         "(A B, B A, ...)")
    progress = _Progress()
    result = run_ab(spec, a, b, rounds=args.rounds, cache=cache, host=args.host,
                    start_method=args.isolation, budget_s=args.budget,
                    on_round=progress.round, on_build=progress.built)
    return _rejudged(result, args)


def build_text(result: AbResult) -> str:
    hits = ["cached" if hit else "built" for hit in result.cache_hits]
    return (f"environments: A {hits[0]}, B {hits[1]} in {result.build_s:.1f} s; "
            f"{result.rounds} round(s) ({' '.join(o.upper() for o in result.order)}); "
            f"total {result.elapsed_s:.0f} s")


def ab_document(result: AbResult, metric: str | None) -> dict[str, Any]:
    """The A/B's own keys of the JSON output (beside compare's)."""
    from collector.usecases.ab import ab_summary

    summary = ab_summary(result, metric)
    return {"ab": {"format": AB_FORMAT, "format_version": FORMAT_VERSION,
                   "benchmark": f"{result.spec.suite}/{result.spec.name}",
                   "pins_a": [str(p) for p in result.a], "pins_b": [str(p) for p in result.b],
                   "versions_a": result.versions_a, "versions_b": result.versions_b,
                   "rounds": result.rounds, "order": list(result.order),
                   "build_s": result.build_s, "elapsed_s": result.elapsed_s,
                   "cache_hits": list(result.cache_hits),
                   "summary": summary.as_dict() if summary is not None else None,
                   "failure": result.failure.model_dump(mode="json")
                   if result.failure is not None else None}}


def run_ab_command(args: argparse.Namespace) -> int:
    from collector.usecases.ab import ab_summary

    _check_measuring(args)
    a, b = _pins(args.a), _pins(args.b)
    if not a and not b:
        raise command_line_problem("--a/--b", "pin at least one side, e.g. --a "
                                   "transformers==5.23.0 --b transformers==5.24.0")
    if a == b:
        raise command_line_problem("--a/--b", "the two sides have the same pins")
    spec = select_spec(args.config, args.benchmark, args.where)
    result = _measure_ab(args, spec, a, b, _cache(args))
    summary = ab_summary(result, args.metric)
    lines = [summary.text if summary is not None else "A/B: no comparison",
             build_text(result)]
    print_comparison(result.comparison, (result.label_a, result.label_b), args.format,
                      ab_document(result, args.metric), lines)
    if result.failure is not None:
        _err().print(f"[bold red]error:[/] A/B failed: {_escape(result.failure.message)}",
                     highlight=False, soft_wrap=True)
        return EXIT_FAILED
    if regressed(result.comparison, args.fail_on_regression):
        return EXIT_REGRESSION
    return EXIT_OK


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# -- bisect --------------------------------------------------------------------------------

def run_bisect_command(args: argparse.Namespace) -> int:
    from collector.usecases.ab import WorkerPools, ab_summary, run_ab
    from collector.usecases.bisect import (
        Step,
        available_versions,
        bisect_packages,
        package_ranges,
    )

    _check_measuring(args)
    ranges = package_ranges(args.package, args.good, args.bad)
    spec = select_spec(args.config, args.benchmark, args.where)
    cache = _cache(args)
    extra = pip_args(args)
    versions: dict[str, list[str]] = {}
    for pack in ranges:
        versions[pack.name] = available_versions(pack.name, pack.good, pack.bad,
                                                 pip_args=extra)
        _say(f"{pack.name}: {len(versions[pack.name])} versions from {pack.good} to "
             f"{pack.bad}: {', '.join(versions[pack.name])}")
    good = _pins([p.pin(p.good) for p in ranges])

    pools = WorkerPools(args.isolation)  # the good side's workers start once

    def ab(pins_b: tuple[str, ...], label: str) -> Step:
        started = time.monotonic()
        _say(f"testing {label} against {' '.join(str(p) for p in good)} ...")
        progress = _Progress()
        result = _rejudged(run_ab(
            spec, good, _pins(list(pins_b)), rounds=args.rounds, cache=cache,
            host=args.host, budget_s=args.budget, pools=pools, on_round=progress.round,
            on_build=progress.built), args)
        elapsed = time.monotonic() - started
        if result.failure is not None:
            return Step(label, "failed", elapsed_s=elapsed, message=result.failure.message)
        summary = ab_summary(result, args.metric)
        if summary is None:
            return Step(label, "failed", elapsed_s=elapsed, message="no comparison")
        return Step(label, summary.verdict, summary, elapsed)

    def show(step: Step) -> None:
        _say(f"[{step.role}] {step.text}", style="red" if step.verdict == "worse" else None)

    with pools:
        outcome = bisect_packages(ranges, lambda p: versions[p.name], ab, on_step=show)
    if args.format == "json":
        sys.stdout.write(json.dumps({"format": BISECT_FORMAT, "format_version": FORMAT_VERSION,
                                     "benchmark": f"{spec.suite}/{spec.name}",
                                     **outcome.as_dict()}, indent=2) + "\n")
    else:
        from rich.console import Console

        Console(highlight=False, soft_wrap=True).print(outcome.text, markup=False)
    if outcome.outcome == "no_effect":
        return EXIT_NO_EFFECT
    if outcome.outcome == "bad_failed":
        return EXIT_FAILED
    return EXIT_OK


# -- rerun ---------------------------------------------------------------------------------

def rerun_document(result: RerunResult) -> dict[str, Any]:
    return {"rerun": {"run_id": result.run.run_id, "suite": result.run.suite,
                      "host": result.run.host,
                      "started_at": result.run.started_at.isoformat(),
                      "pins": [str(p) for p in result.pins],
                      "failure": result.failure.model_dump(mode="json")
                      if result.failure is not None else None,
                      "failed": [f"{r.spec.suite}/{r.spec.name}: "
                                 f"{r.failure.message if r.failure else ''}"
                                 for r in result.fresh if r.status != "ok"]}}


def run_rerun(args: argparse.Namespace, store: Callable[[], Store]) -> int:
    """`store`: the history of record (opened on first use)."""
    from collector.usecases.rerun import rerun

    started = time.monotonic()

    def show(result: BenchmarkResult) -> None:
        state = "ok" if result.status == "ok" else f"failed: {result.failure.message}" \
            if result.failure else "failed"
        _say(f"  reran {result.spec.suite}/{result.spec.name}: {state} "
             f"[{time.monotonic() - started:.0f} s]")

    needs_cache = args.same_environment
    result = rerun(store(), args.run_id, benchmark=args.benchmark,
                   same_environment=args.same_environment,
                   cache=_cache(args) if needs_cache else None, host=args.host,
                   start_method=args.isolation, on_result=show)
    where = (" ".join(str(p) for p in result.pins) if result.pins
             else "this interpreter's packages")
    names = (f"stored run {result.run.run_id[:12]} ({result.run.started_at:%Y-%m-%d %H:%M})",
             f"rerun now ({where})")
    lines = [f"reran {len(result.fresh)} result(s) of run {result.run.run_id} in "
             f"{time.monotonic() - started:.0f} s ({where})"]
    print_comparison(result.comparison, names, args.format, rerun_document(result), lines)
    failed = [r for r in result.fresh if r.status != "ok"]
    if result.failure is not None or failed:
        message = (result.failure.message if result.failure is not None
                   else f"{len(failed)} rerun(s) failed")
        _err().print(f"[bold red]error:[/] {_escape(message)}", highlight=False,
                     soft_wrap=True)
        return EXIT_FAILED
    if regressed(result.comparison, args.fail_on_regression):
        return EXIT_REGRESSION
    return EXIT_OK
