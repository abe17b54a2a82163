"""Continuous performance monitoring for Hugging Face transformers models.

`import collector` is the Python API for notebooks and scripts (collector/api.py):
`load_config`, `spec`, `run`, `open_store`, `history`, `compare`, `to_dataframe`,
`write_results`, `results_of`, `ConfigError`. They load on first use, so importing the
package stays cheap (no torch, no pydantic) for the CLI and the exporter.

`collector.compare` and `collector.history` are the API functions, not the modules of
those names (import those as `from collector.compare import ...`).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from collector.api import (
        ConfigError,
        compare,
        history,
        load_config,
        open_store,
        results_of,
        run,
        spec,
        to_dataframe,
        write_results,
    )

__all__ = ["ConfigError", "__version__", "compare", "history", "load_config", "open_store",
           "results_of", "run", "spec", "to_dataframe", "write_results"]

_API = frozenset(__all__) - {"__version__"}
# API names that are also submodules: importing the submodule must not replace the
# function on the package (the import system sets the submodule as an attribute).
_SHADOWED = frozenset({"compare", "history"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from collector import api

        return getattr(api, name)
    raise AttributeError(f"module 'collector' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return  # the submodule stays reachable in sys.modules
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
