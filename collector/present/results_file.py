"""The results document on disk (docs/results-format.md): written by `run-once --output`
and the Python API, read by `compare` and `report`. Written whole or not at all (a
temporary file renamed into place); read back with an error naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collector.domain.errors import InputError, OutputError
from collector.domain.model import (
    RESULTS_FORMAT,
    RESULTS_FORMAT_VERSION,
    BenchmarkResult,
    RunResult,
)


def write_document(path: Path, document: dict[str, Any]) -> None:
    """`document` as JSON at `path`, atomically; OutputError when it cannot be written."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise OutputError(f"cannot write results to {path}: {exc.strerror or exc}") from None


def load_results(path: str) -> list[BenchmarkResult]:
    """Every result of a results document; a clear error naming the file otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    if not isinstance(document, dict) or document.get("format") != RESULTS_FORMAT:
        raise InputError(f"{path}: not a collector results document (format "
                         f"{RESULTS_FORMAT!r}; write one with `run-once --output`)")
    if document.get("format_version") != RESULTS_FORMAT_VERSION:
        raise InputError(f"{path}: results format version {document.get('format_version')!r}"
                         f", this collector reads {RESULTS_FORMAT_VERSION}")
    results: list[BenchmarkResult] = []
    for index, raw in enumerate(document.get("runs") or []):
        try:
            run = RunResult.model_validate({k: v for k, v in raw.items() if k != "status"})
        except (ValueError, TypeError, AttributeError) as exc:
            first = str(exc).splitlines()
            raise InputError(f"{path}: runs[{index}] is not a valid run: "
                             f"{' '.join(first[:3])}") from None
        results += [r for r in run.results if run.purpose == "scheduled"]
    return results
