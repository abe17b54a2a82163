"""`collector import`: other tools' benchmark history, read into the collector's runs.

One module per source format, each with

    recognises(path: Path, text: str) -> bool   # is this file (or directory) mine? cheap
    read(path: Path, text: str) -> list[ImportedPoint]

(`text` is the file's text, '' for a directory), registered in `FORMATS`. A format is
named on the command line (`--format`) or recognised by its content; a file two formats
claim, or none, is an error that lists the formats. What becomes of the points (runs,
series, ids) is common.build_runs; the transformers benchmark module's database is read by
module_tables.read_database from a URL.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from collector.domain.errors import InputError
from collector.domain.workload import Origin

if TYPE_CHECKING:  # the readers load pydantic's models: not for `collector --help`
    from collector.adapters.imports.common import ImportedPoint

__all__ = ["FORMATS", "FORMAT_NAMES", "Format", "read_all", "read_points"]


@dataclass(frozen=True)
class Format:
    name: str  # --format
    origin: Origin
    module: str  # the importer, in this package
    what: str  # for --help and errors

    def importer(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.{self.module}")


FORMATS = (
    Format("transformers-benchmark-csv", Origin.TRANSFORMERS_BENCHMARK, "module_tables",
           "the transformers benchmark module's CSV exports (benchmarks, model_measurements, "
           "device_measurements; a directory or its benchmarks CSV)"),
    Format("optimum-benchmark", Origin.OPTIMUM_BENCHMARK, "optimum",
           "optimum-benchmark's benchmark_report.json or benchmark.json"),
    Format("benchmark_v2", Origin.BENCHMARK_V2, "benchmark_v2",
           "transformers benchmark_v2 results (JSON Lines, or its JSON file)"),
    Format("vllm-bench-serve", Origin.VLLM_BENCH_SERVE, "vllm",
           "`vllm bench serve --save-result` JSON"),
    Format("guidellm", Origin.GUIDELLM, "guidellm", "a guidellm benchmarks report (JSON)"),
)
FORMAT_NAMES = tuple(f.name for f in FORMATS)


def _by_name(name: str) -> Format:
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise InputError(f"unknown import format {name!r} (one of {', '.join(FORMAT_NAMES)})")


def read_points(path: Path, format_name: str | None = None) -> list[ImportedPoint]:
    """The points of one source file (or, for the module's CSV exports, directory)."""
    from collector.adapters.imports.common import read_source

    text = "" if path.is_dir() else read_source(path)
    if format_name is not None:
        fmt = _by_name(format_name)
    else:
        claimed = [f for f in FORMATS if f.importer().recognises(path, text)]
        if len(claimed) != 1:
            which = (f"both {' and '.join(f.name for f in claimed)} read it" if claimed
                     else "no format recognises it")
            raise InputError(f"{path}: cannot tell its format ({which}); name it with "
                             f"--format ({', '.join(FORMAT_NAMES)})")
        fmt = claimed[0]
    points: list[ImportedPoint] = fmt.importer().read(path, text)
    return points


def read_all(paths: Sequence[Path], format_name: str | None = None) -> list[ImportedPoint]:
    return [point for path in paths for point in read_points(path, format_name)]
