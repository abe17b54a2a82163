"""`collector detect` and `collector regressions` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.adapters.store import SQLiteStore
from collector.usecases.scan import scan
from tests.helpers import make_run
from tests.helpers import run_collector as collector

T0 = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _series(n: int = 60, step_at: int = 40, factor: float = 1.2) -> list[float]:
    rng = random.Random(11)
    return [(factor if i >= step_at else 1.0) * (1 + 0.02 * rng.gauss(0, 1)) for i in range(n)]


def test_detect_reads_csv_and_prints_the_changes_as_json(tmp_path: Path) -> None:
    values = _series()
    lines = ["time,value,samples"]
    for i, v in enumerate(values):
        when = (T0 + timedelta(hours=i)).isoformat()
        lines.append(f"{when},{v},{v * 0.99};{v};{v * 1.01}")
    path = tmp_path / "series.csv"
    path.write_text("\n".join(lines) + "\n")
    done = collector("detect", "--input", str(path))
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert (body["format"], body["points"], body["direction"]) == (
        "collector-detect", 60, "lower_is_better")
    # Dismissed suspicions (noise that came and went) are listed too; one change stays.
    [change] = [c for c in body["changes"] if c["status"] != "dismissed"]
    assert change["kind"] == "regression" and change["status"] == "open"
    assert abs(change["start_index"] - 40) <= 1
    assert change["start_time"] == (T0 + timedelta(hours=change["start_index"])).isoformat()
    assert change["relative_change"] == pytest.approx(0.2, abs=0.03)
    assert 0 <= change["samples_p_value"] < 0.2


def test_detect_reads_json_with_a_direction(tmp_path: Path) -> None:
    values = _series(factor=0.8)  # a throughput that dropped 20%
    path = tmp_path / "series.json"
    path.write_text(json.dumps({"points": [{"value": v} for v in values]}))
    done = collector("detect", "--input", str(path), "--metric",
                     "throughput_samples_per_second")
    assert done.returncode == 0, done.stderr
    [change] = [c for c in json.loads(done.stdout)["changes"] if c["status"] != "dismissed"]
    assert change["kind"] == "regression"
    # The same series as a latency is an improvement.
    better = collector("detect", "--input", str(path), "--direction", "lower")
    assert [c["kind"] for c in json.loads(better.stdout)["changes"]
            if c["status"] != "dismissed"] == ["improvement"]


@pytest.mark.parametrize(("text", "message"), [
    ("time,latency\n1,2\n", "series.csv:1: expected a CSV header with a `value` column"),
    ("value\n1.0\nfast\n", "series.csv:3: value: expected a number, got 'fast'"),
    ("value\n1.0\n-2\n", "series.csv:3: value: expected a positive finite number"),
    ('[{"value": 1}, {"time": 3}]', "series.csv:1: point 1: value: missing"),
    ('{"points": [1, 2', "series.csv:1: invalid JSON"),
    ("value\n", "series.csv:1: no points"),
])
def test_detect_names_the_bad_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "series.csv"
    path.write_text(text)
    done = collector("detect", "--input", str(path))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    missing = collector("detect", "--input", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def _stored_regression(path: Path) -> str:
    store = SQLiteStore(path)
    for hour in range(28):
        latency = 0.010 if hour < 20 else 0.014
        jitter = 1 + 0.01 * ((hour * 7) % 5 - 2)
        # A transformers upgrade with the slowdown (a step with nothing changed behind it
        # would be host drift).
        version = "5.23.0" if hour < 20 else "5.24.0"
        store.record_run(make_run(when=T0 + timedelta(hours=hour), models=("bert",),
                                  latency=latency * jitter,
                                  environment={"transformers_version": version}))
        scan(store)
    [reg] = store.regressions(metric="latency_p50_seconds")
    store.close()
    return reg.regression_id


def test_regressions_list_ack_baseline_and_scan(tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    reg_id = _stored_regression(db)
    listed = collector("regressions", "--local-store", str(db), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    mine = next(r for r in rows if r["regression_id"] == reg_id)
    assert (mine["status"], mine["kind"], mine["metric"]) == (
        "open", "regression", "latency_p50_seconds")
    assert mine["series"]["benchmark"] == "bert"
    assert mine["series"]["model"].startswith("BertForSequenceClassification@")
    table = collector("regressions", "list", "--local-store", str(db), "--metric",
                      "latency_p50_seconds")
    assert reg_id in table.stdout
    assert f"{mine['relative_change']:+.1%}" in table.stdout  # +40% or so
    assert 0.35 < mine["relative_change"] < 0.45

    acked = collector("regressions", "ack", reg_id[:6], "--local-store", str(db), "--by",
                      "ana", "--note", "known: new tokenizer")
    assert acked.returncode == 0, acked.stderr
    after = json.loads(collector("regressions", "--local-store", str(db), "--status",
                                 "acknowledged", "--format", "json").stdout)
    assert [(r["regression_id"], r["acknowledged_by"], r["note"]) for r in after] == [
        (reg_id, "ana", "known: new tokenizer")]

    series = mine["series_id"]
    based = collector("regressions", "baseline", series[:6], "latency_p50_seconds",
                      "--local-store", str(db), "--reason", "accepted")
    assert based.returncode == 0, based.stderr
    assert "1 change(s) marked expected" in based.stdout
    expected = json.loads(collector("regressions", "--local-store", str(db), "--status",
                                    "expected", "--format", "json").stdout)
    assert [r["regression_id"] for r in expected] == [reg_id]

    scanned = collector("regressions", "scan", "--local-store", str(db))
    assert scanned.returncode == 0, scanned.stderr
    assert "scanned 1 series" in scanned.stdout


def test_regressions_errors_are_clear(tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    _stored_regression(db)
    for args, message, code in (
        (("ack", "zzzz"), "no regression 'zzzz'", 2),
        (("ack", "ab"), "at least 4 characters", 2),
        (("baseline", "ffff", "latency_p50_seconds"), "no series 'ffff'", 2),
        (("baseline", "", "no_such_metric"), "unknown metric 'no_such_metric'", 2),
        (("--status", "bogus"), "unknown regression status(es): bogus", 2),
    ):
        done = collector("regressions", *args, "--local-store", str(db))
        assert done.returncode == code, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_empty_answers_say_what_detection_needs(tmp_path: Path) -> None:
    """Nothing found is not the same as nothing judged: with 5 runs a series, `regressions`
    and `detect` say the detector needs 20 before it judges."""
    db = tmp_path / "local.db"
    store = SQLiteStore(db)
    for i in range(5):
        store.record_run(make_run(when=T0 + timedelta(hours=i)))
    store.close()
    listed = collector("regressions", "list", "--local-store", str(db))
    assert listed.returncode == 0, listed.stderr
    assert "judges a series from its 20th scheduled success" in listed.stdout
    assert "0 of 2 series have that many; the others have 5 to 5" in listed.stdout
    path = tmp_path / "short.csv"
    path.write_text("time,value\n" + "".join(
        f"{(T0 + timedelta(hours=i)).isoformat()},{1.0 + 0.01 * i}\n" for i in range(8)))
    short = collector("detect", "--input", str(path))
    assert short.returncode == 0, short.stderr
    assert json.loads(short.stdout)["note"] == "too few points to judge: 8 of 20"
    assert "judges a series from its 20th point" in short.stderr
    full = tmp_path / "full.csv"
    full.write_text("time,value\n" + "".join(
        f"{(T0 + timedelta(hours=i)).isoformat()},{v}\n" for i, v in enumerate(_series())))
    judged = collector("detect", "--input", str(full))
    assert json.loads(judged.stdout)["note"] is None and judged.stderr == ""
