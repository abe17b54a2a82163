"""Deprecated import path, kept for one release: the isolated workers are in
collector.adapters.measure (docs/architecture.md lists the moved paths)."""

import warnings

from collector.adapters.measure import WorkerPool, run_benchmark

warnings.warn("collector.runner moved to collector.adapters.measure; the old path goes in the "
              "next release", DeprecationWarning, stacklevel=2)

__all__ = ["WorkerPool", "run_benchmark"]
