"""What a command works on: the suites and benchmarks of a config it runs (`Selection`, one
benchmark by name and fields: `select_spec`), and the results it reads: a results file or a
selector of stored runs (`load_side`), and the stored regressions of those results.

A selector is `KEY=VALUE[,KEY=VALUE...]` with keys run (an id or prefix), suite, host,
since, until (ISO times), last (the newest N matching runs, default 10) and any environment
field (e.g. transformers_version=5.23.0)."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from collector.adapters.config import Config, Suite
from collector.adapters.files import read_text
from collector.domain.errors import InputError, SelectionError, command_line_problem
from collector.domain.history import Regression, ResultsOfRun, Store, flatten
from collector.domain.model import BenchmarkResult, BenchmarkSpec
from collector.present.documents import parse_results


@dataclass(frozen=True)
class Selection:
    """Which suites and benchmarks to run; None means all. Benchmark names accept globs."""

    suites: Sequence[str] | None = None
    benchmarks: Sequence[str] | None = None

    def apply(self, config: Config) -> list[Suite]:
        known = [s.name for s in config.suites]
        if self.suites:
            missing = [name for name in self.suites if name not in known]
            if missing:
                raise SelectionError(f"unknown suite(s): {', '.join(missing)}; the config "
                                     f"defines: {', '.join(known)}")
        chosen = [s for s in config.suites if not self.suites or s.name in self.suites]
        if self.benchmarks:
            patterns = list(self.benchmarks)
            chosen = [dataclasses.replace(s, benchmarks=tuple(
                b for b in s.benchmarks if any(fnmatch.fnmatchcase(b.name, p) for p in patterns)))
                for s in chosen]
            chosen = [s for s in chosen if s.benchmarks]
            if not chosen:
                raise SelectionError(f"no benchmark matches {', '.join(patterns)}")
        return chosen


def load_side(side: str, store: Callable[[], Store]) -> list[ResultsOfRun]:
    """A SIDE argument's runs: a selector of stored runs (`store` opened on first use),
    else a results file."""
    if is_selector(side):
        return select_stored_runs(side, store())
    return parse_results(read_text(side, what="results document"), side)


def load_sides(sides: Sequence[str], store: Callable[[], Store],
               notes: list[str] | None = None) -> list[ResultsOfRun]:
    """Several SIDE arguments' runs, in order, each run once: a run read twice (a file
    given twice, two selectors matching it) would count as two runs with the same values,
    which fakes certainty (a 4% difference judged with an interval of zero width). What
    was dropped is said in `notes`; a run id read twice with different results is refused."""
    unique: dict[str, tuple[ResultsOfRun, str]] = {}
    repeats: dict[str, int] = {}
    for side in sides:
        for run in load_side(side, store):
            seen = unique.get(run.run_id)
            if seen is None:
                unique[run.run_id] = (run, side)
            elif seen[0].results != run.results:
                raise InputError(f"{side}: run {run.run_id} differs from the run of that id in "
                                 f"{seen[1]}: one run id, two sets of results")
            else:
                repeats[run.run_id] = repeats.get(run.run_id, 1) + 1
    if notes is not None:
        notes += [f"run {run_id} was given {times} times; it counts once"
                  for run_id, times in repeats.items()]
    return [run for run, _ in unique.values()]


def refuse_shared_runs(side_a: Sequence[ResultsOfRun], side_b: Sequence[ResultsOfRun],
                       names: tuple[str, str]) -> None:
    """A run on both sides of a comparison compares with itself: InputError naming it."""
    in_b = {run.run_id for run in side_b}
    shared = [run.run_id for run in side_a if run.run_id in in_b]
    if shared:
        more = f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""
        raise InputError(f"run {shared[0]}{more} is on both sides (A: {names[0]}; B: "
                         f"{names[1]}): a run compared with itself says nothing; give each "
                         "run to one side")


SELECTOR_KEYS = ("run", "suite", "host", "since", "until", "last")
DEFAULT_LAST = 10


def is_selector(side: str) -> bool:
    return "=" in side and not Path(side).exists()


def parse_selector(side: str) -> dict[str, str]:
    """`KEY=VALUE[,KEY=VALUE...]` -> {key: value}, keys checked (environment fields too)."""
    from collector.domain.model import Environment

    known = (*SELECTOR_KEYS, *Environment.model_fields)
    parsed: dict[str, str] = {}
    for part in side.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise command_line_problem(side, f"expected KEY=VALUE, got {part!r}")
        if key not in known:
            raise command_line_problem(side, f"unknown key {key!r}: use "
                                       f"{', '.join(SELECTOR_KEYS)} or an environment "
                                       "field (e.g. transformers_version)")
        parsed[key] = value.strip()
    return parsed


def _when(side: str, key: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise command_line_problem(side, f"{key}: expected an ISO time such as 2026-11-30 "
                                   f"or 2026-11-30T12:00Z, got {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def select_stored(side: str, store: Store) -> list[BenchmarkResult]:
    """The results of the stored runs a selector names (newest `last` of those matching)."""
    return flatten(select_stored_runs(side, store))


def select_stored_runs(side: str, store: Store) -> list[ResultsOfRun]:
    """select_stored, run by run."""
    wanted = parse_selector(side)
    try:
        last = int(wanted.get("last", DEFAULT_LAST))
    except ValueError:
        raise command_line_problem(
            side, f"last: expected a number of runs, got {wanted['last']!r}") from None
    if last < 1:
        raise command_line_problem(side, "last: at least 1 run")
    runs = store.runs(suite=wanted.get("suite"), host=wanted.get("host"),
                      since=_when(side, "since", wanted.get("since")),
                      until=_when(side, "until", wanted.get("until")),
                      run_id_prefix=wanted.get("run"))
    environment = {k: v for k, v in wanted.items() if k not in SELECTOR_KEYS}
    runs = [r for r in runs
            if all(str(r.environment.get(k)) == v for k, v in environment.items())][:last]
    if not runs:
        raise InputError(f"{side}: no stored scheduled run matches")
    return store.results_of_runs(runs)


def where_fields(texts: list[str]) -> dict[str, str]:
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
    from collector.usecases.select import Selection

    wanted = where_fields(where or [])
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


def stored_regressions(store: Store, results: Sequence[BenchmarkResult]) -> list[Regression]:
    """The store's regressions of the reported series that overlap the reported time."""
    series = {r.series_id for r in results}
    start = min(r.started_at for r in results)
    return [record for record in store.regressions()
            if record.series_id in series
            and (record.resolved_at is None or record.resolved_at >= start)]
