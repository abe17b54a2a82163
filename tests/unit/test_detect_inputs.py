"""`collector detect --input`: malformed files are one line on stderr naming the file and
line, exit 2 (never a traceback, never exit 1, the "benchmark failed" code)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from collector.cli import main

SERIES = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01]


def detect(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["detect", "--input", str(path)])
    return code, out.getvalue(), err.getvalue()


def refused(path: Path) -> str:
    code, out, err = detect(path)
    assert code == 2, (code, err)
    assert out == ""
    (line,) = err.splitlines()  # one line, no traceback
    assert line.startswith(f"error: {path}:"), line
    return line


def csv_text(values: list[float]) -> str:
    return "value\n" + "".join(f"{v}\n" for v in values)


# (name, file name, content, message after "error: <path>")
REFUSED = [
    ("deep JSON", "s.json", "[" * 5000 + "]" * 5000, ":1: nested more than 32 levels deep"),
    ("deep JSON on line 3", "s.json", '{"points":\n [\n' + "[" * 40 + "]" * 40 + "]}",
     ":3: nested more than 32 levels deep"),
    ("400-digit integer", "s.json", json.dumps([{"value": v} for v in SERIES])[:-1]
     + ',\n{"value": ' + "9" * 400 + "}]",
     ":2: point 8: value: expected a number, got an integer of 400 digits"),
    ("5000-digit integer", "s.json", '[{"value": ' + "9" * 5000 + "}]",
     ":1: point 0: value: expected a number, got an integer of 5,000 digits"),
    ("CSV field over 131,072 characters", "s.csv",
     "value,time\n1,a\n2," + "x" * 140_000 + "\n",
     ":3: invalid CSV: field larger than field limit (131072)"),
    ("boolean value", "s.json", '[{"value": 1},\n {"value": true}]',
     ":2: point 1: value: expected a number, got True"),
    ("boolean sample", "s.json", '[{"value": 1, "samples": [1, false]}]',
     ":1: point 0: samples: expected a number, got False"),
    ("point on its own line", "s.json", '{"points": [\n {"value": 1},\n\n {"value": "x"}]}',
     ":4: point 1: value: expected a number, got 'x'"),
    ("object as time", "s.json", '[{"value": 1, "time": {"a": 1}}]',
     ":1: point 0: time: expected a string, got {'a': 1}"),
    ("samples as an object", "s.json", '[{"value": 1, "samples": {"a": 1}}]',
     ":1: point 0: samples: expected a list of numbers, got {'a': 1}"),
    ("not UTF-8", "s.csv", b"value\n1\n\xff\n", ":3: not UTF-8 text (byte 0xff)"),
    ("newline in a value", "s.json", '[{"value": "1\\n2"}]',
     ":1: point 0: value: expected a number, got '1\\n2'"),
]


@pytest.mark.parametrize(("name", "content", "message"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_malformed_input_is_one_line_with_file_and_line_and_exit_2(
        tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert refused(path) == f"error: {path}{message}"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8"])
def test_a_byte_order_mark_is_accepted(tmp_path: Path, encoding: str) -> None:
    for name, text in (("s.csv", csv_text(SERIES)),
                       ("s.json", json.dumps([{"value": v} for v in SERIES]))):
        path = tmp_path / name
        path.write_text(text, encoding=encoding)
        code, out, err = detect(path)
        assert code == 0, err
        assert json.loads(out)["points"] == len(SERIES)


def test_contaminated_still_takes_booleans_and_zero_or_one(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"value": v, "contaminated": flag} for v, flag in
                                zip(SERIES, [True, False, 0, 1, "yes", "no", None, ""],
                                    strict=True)]))
    code, out, err = detect(path)
    assert code == 0, err
    assert json.loads(out)["points"] == len(SERIES)
