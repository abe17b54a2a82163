"""Deprecated import path, kept for one release: the specs and results are in
collector.domain.model (docs/architecture.md lists the moved paths)."""

import warnings

from collector.domain.model import (
    BenchmarkResult,
    BenchmarkSpec,
    Environment,
    Failure,
    FailureKind,
    RunResult,
)

warnings.warn("collector.model moved to collector.domain.model; the old path goes in the next "
              "release", DeprecationWarning, stacklevel=2)

__all__ = ["BenchmarkResult", "BenchmarkSpec", "Environment", "Failure", "FailureKind",
           "RunResult"]
