"""The collector's exit codes, in one table: what a script or CI job can test for.
`collector --help` prints it (epilog); docs/exit-codes.md is generated from it
(docs/build_docs.py), and tests/unit/test_docs.py holds that page to it."""

from __future__ import annotations

from enum import IntEnum

from collector.domain.errors import CollectorError, OutputError, StoreError


class Exit(IntEnum):
    OK = 0
    FAILED = 1  # a benchmark failed (the others ran); ab, bisect, rerun: could not measure
    USAGE = 2  # invalid configuration, command line or input file
    OUTPUT = 3  # results could not be written to --output
    STORE = 4  # a history store failed (runs wait in the outbox)
    REGRESSION = 5  # compare, ab, rerun with --fail-on-regression: B is judged worse
    NO_EFFECT = 6  # bisect: the bad version is not worse than the good one
    INTERRUPTED = 130  # Ctrl-C


MEANINGS = {
    Exit.OK: "success",
    Exit.FAILED: "a benchmark failed (the others ran; all results are printed and written); "
                 "ab, bisect and rerun: the A/B could not be measured",
    Exit.USAGE: "invalid configuration, command line or input file",
    Exit.OUTPUT: "results could not be written to --output",
    Exit.STORE: "a history store failed: the local store could not keep the runs, or the "
                "database could not be reached, migrated or synced (runs wait in the outbox)",
    Exit.REGRESSION: "with --fail-on-regression: a metric is judged worse (compare, ab, "
                     "rerun)",
    Exit.NO_EFFECT: "bisect: the bad version is not worse than the good one",
    Exit.INTERRUPTED: "interrupted (Ctrl-C)",
}

# The exit code of each documented failure kind (collector.domain.errors), first match wins.
_FOR_ERROR: tuple[tuple[type[CollectorError], Exit], ...] = (
    (OutputError, Exit.OUTPUT), (StoreError, Exit.STORE), (CollectorError, Exit.USAGE))


def for_error(error: CollectorError) -> Exit:
    return next(code for kind, code in _FOR_ERROR if isinstance(error, kind))


def epilog() -> str:
    """The table for `collector --help`."""
    return "exit codes:\n" + "\n".join(f"  {code.value:<4}{MEANINGS[code]}" for code in Exit)
