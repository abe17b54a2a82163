"""Continuous performance monitoring for Hugging Face transformers models.

`import collector` is the Python API for notebooks and scripts (collector/api.py):
`load_config`, `spec`, `run`, `open_store`, `read_history`, `compare_runs`,
`report_markdown`, `to_dataframe`, `write_report` (HTML), `write_results`, `results_of`,
`ConfigError`. They
load on first use, so importing the package stays cheap (no torch, no pydantic) for the
CLI and the exporter.
(`compare_runs`, `read_history` and `report_markdown`, not `compare`, `history` and
`report`: those are the names of the package's own modules, which replace a lazy name on
the package once imported.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from collector.version import __version__

if TYPE_CHECKING:
    from collector.api import (
        ConfigError,
        compare_runs,
        load_config,
        open_store,
        read_history,
        report_markdown,
        results_of,
        run,
        spec,
        to_dataframe,
        write_report,
        write_results,
    )

__all__ = ["ConfigError", "__version__", "compare_runs", "load_config", "open_store",
           "read_history", "report_markdown", "results_of", "run", "spec", "to_dataframe",
           "write_report", "write_results"]

_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from collector import api

        return getattr(api, name)
    raise AttributeError(f"module 'collector' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
