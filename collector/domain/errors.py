"""One exception per failure kind. Only the CLI turns them into messages and exit codes."""

from __future__ import annotations

from dataclasses import dataclass


def one_line(text: str) -> str:
    """Text as one printable line: control characters, line and paragraph separators
    escaped (a key or a file name with a newline in it must not split an error message, nor
    forge a log line)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


class CollectorError(Exception):
    """Base class of every error the collector reports to a user."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a configuration file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = self.field or "(document)"
        return one_line(f"{where}: {field}: {self.message}")


class ConfigError(CollectorError):
    """The configuration is invalid. Carries every problem found, not only the first; its
    text names each (file, line, field and what is wrong), so that a caller who prints the
    exception (a script using the Python API) reads them too."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        self.summary = f"{count} problem{'s' if count != 1 else ''} in the configuration"
        super().__init__(self.summary + "".join(f"\n  {p}" for p in self.problems))


def command_line_problem(field: str, message: str) -> ConfigError:
    """A bad command-line value, reported like a config problem (the option named)."""
    return ConfigError([ConfigProblem("(command line)", None, field, message)])


class SelectionError(CollectorError):
    """A suite or benchmark selected on the command line does not exist."""


class OutputError(CollectorError):
    """A result file could not be written."""


class StoreError(CollectorError):
    """A history store could not do what was asked."""


class TemporaryStoreError(StoreError):
    """Worth retrying: the server is unreachable, restarting or shutting down."""


class PermanentStoreError(StoreError):
    """Retrying will not help: permission denied, schema mismatch, bad credentials."""


class RejectedDataError(PermanentStoreError):
    """The database refuses this one run's data (a value out of a column's range, a broken
    constraint, a document that no longer validates): retrying it will not help, other runs
    may still go through. The outbox quarantines such a run and forwards the rest."""


class SchemaError(PermanentStoreError):
    """The database schema is older than this collector (and migration is refused), newer
    than it knows, or an applied migration was edited."""


class InputError(CollectorError):
    """A data file given on the command line (e.g. `collector detect --input`) is
    malformed; the message names the file and line."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class NotFoundError(CollectorError):
    """A regression or series named on the command line does not exist (or a prefix is
    ambiguous)."""
