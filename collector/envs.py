"""Deprecated import path, kept for one release: package environments are in
collector.adapters.envs, pins in collector.domain.packages (docs/architecture.md lists the
moved paths)."""

import warnings

from collector.adapters.envs import EnvironmentBuildError, EnvironmentCache
from collector.domain.packages import Pin, parse_pins, record_names

warnings.warn("collector.envs moved to collector.adapters.envs (pins: collector.domain.packages);"
              " the old path goes in the next release", DeprecationWarning, stacklevel=2)

__all__ = ["EnvironmentBuildError", "EnvironmentCache", "Pin", "parse_pins", "record_names"]
