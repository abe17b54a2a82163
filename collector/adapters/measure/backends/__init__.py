"""Backends: one module per runtime, each behind the small interface in `base`.

A backend turns the loaded transformers model into the step the trackers time. What each can
run is declared torch-free in collector/domain/capabilities.py (check-config reads it); this
package imports a backend's module, and with it its runtime, only when a benchmark uses it,
so a missing optional package fails that benchmark alone (`backend_unavailable`).
Adding a backend: a value in collector.domain.model.Backend, a row in
collector.domain.capabilities, and a module here of the same name defining `BACKEND`.
"""

from __future__ import annotations

import importlib

from collector.adapters.measure.backends.base import BackendImpl
from collector.domain.model import Backend

_MODULES = {Backend.EAGER: "eager", Backend.COMPILE: "compiled",
            Backend.ONNXRUNTIME: "onnxruntime", Backend.OPENVINO: "openvino"}


def get(backend: Backend) -> BackendImpl:
    """The implementation of `backend` (its module imported now)."""
    module = importlib.import_module(f"{__name__}.{_MODULES[backend]}")
    impl: BackendImpl = module.BACKEND
    return impl


__all__ = ["BackendImpl", "get"]
