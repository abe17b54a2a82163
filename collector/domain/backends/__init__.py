"""Backends, registered by name: one declaration module per backend in this package (what it
can run, its extra, its settings; torch-free) and its runtime in the module of the same name
under collector/adapters/measure/backends/ (only the worker imports it).

Adding a backend is those two modules and its extra in pyproject.toml: the registry finds
the declaration by its module name, the config, the specs, `check-config` and the worker
read it from here.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from collector.domain.backends.base import BackendDeclaration, BackendSettings, Capability

__all__ = ["REFERENCE", "BackendDeclaration", "BackendSettings", "Capability", "declared",
           "get", "names"]

# The backend every other one is compared with (output drift, findings' speedups).
REFERENCE = "eager"
_NOT_BACKENDS = frozenset({"base"})
# The order backends are listed in (the rest follow by name).
_FIRST = ("eager", "compile")


@functools.cache
def declared() -> dict[str, BackendDeclaration]:
    """Every declared backend by name: the `BACKEND` of each module of this package."""
    found: dict[str, BackendDeclaration] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name in _NOT_BACKENDS or module.name.startswith("_"):
            continue
        declaration = importlib.import_module(f"{__name__}.{module.name}").BACKEND
        if not isinstance(declaration, BackendDeclaration) or declaration.name != module.name:
            raise TypeError(f"{__name__}.{module.name}: BACKEND must be a BackendDeclaration "
                            f"named {module.name!r}")
        found[declaration.name] = declaration
    order = [n for n in _FIRST if n in found] + sorted(set(found) - set(_FIRST))
    return {name: found[name] for name in order}


def names() -> tuple[str, ...]:
    return tuple(declared())


def get(name: str) -> BackendDeclaration:
    """The declaration of a backend; KeyError for a name no module declares."""
    return declared()[name]


def with_settings() -> dict[str, type[BackendSettings]]:
    """The settings mapping of each backend that has one, by backend name."""
    return {name: d.settings for name, d in declared().items() if d.settings is not None}
