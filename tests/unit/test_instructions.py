"""Instructions mode without valgrind: the dump parser, the refusals, the sizing arithmetic
of extra_compute, and the clean failures when valgrind or a compiler is missing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collector.adapters.measure.callgrind import CallgrindError, _head_and_tail, parse_totals
from collector.adapters.measure.extra_compute import (
    CHUNK_ROWS,
    chunk_count,
    rows_per_call,
    solve_rows,
    spread,
)
from collector.adapters.measure.valgrind import (
    ValgrindUnavailable,
    build_client_library,
    find_valgrind,
    instructions_mode_problem,
)
from collector.domain.model import BenchmarkSpec
from tests.helpers import spec_dict

DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4107
cmd:  /work/main/.venv/bin/python t2.py
part: 1

desc: I1 cache:
desc: D1 cache:
desc: LL cache:

desc: Timerange: Basic block 0 - 931515
desc: Trigger: Client Request: iteration 1

positions: line
events: Ir
summary: 6644426


ob=(1) /usr/lib/x86_64-linux-gnu/libc.so.6
fl=(1) ???
fn=(1) 0x00000000000271c0
0 3
cfn=(2) memcpy
calls=1 0
0 120

totals: 6644667
"""


def test_totals_of_a_dump() -> None:
    assert parse_totals(DUMP) == {"Ir": 6644667}


def test_summary_is_the_fallback_without_totals() -> None:
    assert parse_totals(DUMP.replace("totals: 6644667\n", "")) == {"Ir": 6644426}


def test_several_events_and_omitted_trailing_zeros() -> None:
    text = "events: Ir Dr Dw\nfn=(1) f\n0 5 2\ntotals: 5 2\n"
    assert parse_totals(text) == {"Ir": 5, "Dr": 2, "Dw": 0}


@pytest.mark.parametrize(("text", "problem"), [
    ("", "no 'events:' line"),
    ("events: Ir\nfn=(1) f\n0 5\n", "neither a 'totals:' nor a 'summary:'"),
    ("events: Ir\ntotals: 5 6\n", "1 event(s) but 2 total(s)"),
    ("events: Ir\ntotals: many\n", "non-integer totals"),
    ("events: Ir\ntotals: 1\nevents: Ir\ntotals: 2\n", "more than one 'events:'"),
])
def test_malformed_dumps_are_refused(text: str, problem: str) -> None:
    with pytest.raises(CallgrindError, match=re.escape(problem)):
        parse_totals(text)


def test_large_dumps_are_read_by_header_and_end(tmp_path: Path) -> None:
    body = "".join(f"fn=({i}) f{i}\n0 {i}\n" for i in range(20_000))
    path = tmp_path / "callgrind.out.1.1"
    path.write_text("events: Ir\nsummary: 99\n" + body + "totals: 12345\n")
    text = _head_and_tail(path, block=1024)
    assert len(text) < 2048
    assert parse_totals(text) == {"Ir": 12345}


def _spec(**fields: object) -> BenchmarkSpec:
    return BenchmarkSpec.model_validate(spec_dict(
        "bert", measurement={"mode": "instructions"}, **fields))


def test_instructions_mode_refuses_threads_and_cuda() -> None:
    assert instructions_mode_problem(_spec()) is None
    assert instructions_mode_problem(_spec(threads=1)) is None
    problem = instructions_mode_problem(_spec(threads=2))
    assert problem is not None and "threads: 2" in problem and "one torch thread" in problem
    problem = instructions_mode_problem(_spec(device="cuda"))
    assert problem is not None and "use device 'cpu'" in problem


def test_missing_valgrind_names_what_to_install(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValgrindUnavailable, match="apt-get install valgrind"):
        find_valgrind(str(tmp_path / "no-such-valgrind"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("COLLECTOR_VALGRIND", raising=False)
    with pytest.raises(ValgrindUnavailable, match="no valgrind on PATH"):
        find_valgrind()


def test_missing_compiler_names_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ValgrindUnavailable, match="install a C compiler"):
        build_client_library(tmp_path, compiler=str(tmp_path / "no-such-cc"))


def test_spread_and_placement() -> None:
    assert spread(10, 4) == [2, 3, 2, 3]
    assert sum(spread(7, 3)) == 7
    # 2 of 8 calls carry the work, evenly spaced; every call when there is enough.
    assert rows_per_call(100, 8, 2) == (0, 0, 0, 50, 0, 0, 0, 50)
    assert rows_per_call(8, 8, 8) == (1,) * 8
    assert rows_per_call(5, 1, 3) == (5,)
    assert chunk_count((CHUNK_ROWS + 1, 0, 3)) == 3


def test_solve_rows_meets_the_budget() -> None:
    fixed, per_row = 30_000.0, 1_000.0
    for calls in (1, 5, 16):
        for budget in (45_000.0, 200_000.0, 3_000_000.0):
            rows = solve_rows(budget, fixed, per_row, calls)
            assert len(rows) == calls
            cost = fixed * chunk_count(rows) + per_row * sum(rows)
            # Within one step of the cost: a row, or a matmul call more.
            assert cost == pytest.approx(budget, abs=fixed + per_row), (calls, budget)
            used = [r for r in rows if r]
            # Each matmul call is at least twice its fixed cost, unless one call is all.
            assert len(used) == 1 or min(used) * per_row >= fixed
    assert solve_rows(0.0, fixed, per_row, 3) == (0, 0, 0)
