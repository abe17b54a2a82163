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
benchmarks into specs).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

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
from collector.domain.errors import ConfigError, ConfigProblem

__all__ = ["AbSettings", "Config", "ConfirmationSettings", "DetectionSettings",
           "EnvironmentSettings", "ReportSettings", "Schedule", "ServeSettings",
           "StorageSettings", "Suite", "TimescaleSettings", "load_config"]


def _read(path: str | Path, file: str) -> str:
    """The file's text: at most MAX_FILE_BYTES, UTF-8 (a byte order mark is allowed)."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(file, None, "", "file not found")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(file, None, "", f"cannot read file: "
                                                         f"{exc.strerror or exc}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([ConfigProblem(file, None, "", f"larger than {MAX_FILE_BYTES >> 20} "
                                                         "MiB; a configuration is a few KiB")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigProblem(file, line, "", f"not UTF-8 text (byte "
                                                         f"0x{data[exc.start]:02x})")]) from None


def load_config(path: str | Path, *,
                architecture_known: ArchitectureCheck = transformers_architecture_known) -> Config:
    """Read, validate and expand a configuration file. Raises ConfigError with every problem."""
    file = str(path)
    root = yaml_load(_read(path, file), file)
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
    suites = tuple(expand_suite(check, parsed, name, suite)
                   for name, suite in parsed.suites.items())
    if check.problems:
        raise ConfigError(sorted(check.problems, key=lambda p: (p.line or 0, p.field)))
    return Config(file, suites, tuple(check.notes), parsed.storage, parsed.serve,
                  parsed.detection, parsed.environment, parsed.report)
