"""Backend runtimes: one module per backend, named after it, each defining `BACKEND` behind
the small interface in `base`.

A runtime turns the loaded transformers model into the step the trackers time. What each
backend can run is declared torch-free in the module of the same name under
collector/domain/backends/ (check-config reads it); this package imports a runtime, and with
it its packages, only when a benchmark uses it, so a missing optional package fails that
benchmark alone (`backend_unavailable`).
"""

from __future__ import annotations

import importlib

from collector.adapters.measure.backends.base import BackendImpl

__all__ = ["BackendImpl", "get"]


def get(backend: str) -> BackendImpl:
    """The runtime of `backend` (its module imported now)."""
    module = importlib.import_module(f"{__name__}.{backend}")
    impl: BackendImpl = module.BACKEND
    return impl
