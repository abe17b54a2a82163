"""YAML configuration: parsed with line numbers, validated into frozen BenchmarkSpecs.

Every problem is reported with file, line, field path, the bad value and what was expected,
all at once: the file's frame is validated first, then every benchmark on its own, so one bad
benchmark does not hide the problems of another. Validation does no I/O beyond reading the
file; the one exception is the check of synthetic architecture names, which asks the installed
transformers package (a lazy import: torch is not loaded) and is skipped with a note where
transformers is absent.

The parts: `bounds` (limits of what a config may hold), `yaml_source` (YAML with
positions), `schema` (the file's benchmark settings), `settings` (the other sections and
the loaded Config), `problems` (validation errors as file:line:field), `expand` (suites'
benchmarks into specs), `legacy` (the transformers benchmark module's format, translated).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from collector.adapters.config import legacy
from collector.adapters.config.bounds import MAX_FILE_BYTES
from collector.adapters.config.expand import (
    ArchitectureCheck,
    Checker,
    expand_suite,
    transformers_architecture_known,
)
from collector.adapters.config.problems import problems_from
from collector.adapters.config.schema import ConfigFile
from collector.adapters.config.settings import (
    AbSettings,
    Config,
    ConfirmationSettings,
    CostSettings,
    DetectionSettings,
    EnvironmentSettings,
    ReportSettings,
    Schedule,
    ServeSettings,
    StorageSettings,
    Suite,
    TimescaleSettings,
)
from collector.adapters.config.yaml_source import plain, yaml_load
from collector.adapters.files import ReadFailure, decode, read_bounded
from collector.domain.errors import ConfigError, ConfigProblem

__all__ = ["AbSettings", "Config", "ConfirmationSettings", "CostSettings", "DetectionSettings",
           "EnvironmentSettings", "ReportSettings", "Schedule", "ServeSettings",
           "StorageSettings", "Suite", "TimescaleSettings", "load_config", "load_document",
           "parse_config"]


def _read(path: str | Path, file: str) -> str:
    """The file's text: at most MAX_FILE_BYTES, UTF-8 (a byte order mark is allowed)."""
    try:
        return decode(read_bounded(path, MAX_FILE_BYTES))
    except ReadFailure as failure:
        reason = failure.reason
        if reason.startswith("larger than"):
            reason += "; a configuration is a few KiB"
        raise ConfigError([ConfigProblem(file, failure.line, "", reason)]) from None


def parse_config(path: str | Path) -> Any:
    """The file's YAML tree (ruamel's round-trip nodes: each knows its line)."""
    return yaml_load(_read(path, str(path)), str(path))


def load_config(path: str | Path, *,
                architecture_known: ArchitectureCheck = transformers_architecture_known) -> Config:
    """Read, validate and expand a configuration file. Raises ConfigError with every problem."""
    return load_document(parse_config(path), str(path), architecture_known=architecture_known)


def load_document(root: Any, file: str, *,
                  architecture_known: ArchitectureCheck = transformers_architecture_known,
                  ) -> Config:
    """Validate and expand a parsed document (plain data has no lines). One in the
    transformers benchmark module's format is translated first (`legacy`); its problems name
    the old file's lines and fields, and a note says it was translated."""
    translation = legacy.translate(root, file)
    if translation is None:
        return _load_native(root, file, architecture_known)
    try:
        config = _load_native(translation.document, file, architecture_known)
    except ConfigError as exc:
        raise ConfigError(translation.located(exc.problems)) from None
    return dataclasses.replace(config, notes=(*translation.notes, *config.notes))


def _load_native(root: Any, file: str, architecture_known: ArchitectureCheck) -> Config:
    if not isinstance(root, dict):
        got = "an empty file" if root is None else f"a {type(root).__name__}"
        raise ConfigError([ConfigProblem(file, 1, "", f"expected a mapping with a 'suites' "
                                                      f"key, got {got}")])
    try:
        parsed = ConfigFile.model_validate(plain(root))
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, file, root, ConfigFile)) from None

    check = Checker(file, root, architecture_known)
    check.matrix_conflicts(parsed.defaults, ("defaults",))
    check.strict_values(root.get("defaults"), ("defaults",))
    suites = tuple(expand_suite(check, parsed, name, suite)
                   for name, suite in parsed.suites.items())
    if check.problems:
        raise ConfigError(sorted(check.problems, key=lambda p: (p.line or 0, p.field)))
    return Config(file, suites, tuple(check.notes), parsed.storage, parsed.serve,
                  parsed.detection, parsed.environment, parsed.report, cost=parsed.cost)
