"""The run journal: each run is journalled in the local store as it happens (its start,
each benchmark's start, each finished repetition), and a journal whose process is gone
becomes an aborted run at the next start (recover_crashed_runs): nothing finished is lost
when the process is killed."""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from collector.adapters.locks import OwnerLock
from collector.adapters.store import SQLiteStore
from collector.analysis.combine import combine
from collector.domain.errors import StoreError
from collector.domain.model import (
    BenchmarkResult,
    BenchmarkSpec,
    Environment,
    Failure,
    FailureKind,
    RunResult,
)
from collector.version import __version__

log = logging.getLogger("collector.runs")

_owners: dict[Path, OwnerLock] = {}
_owners_lock = threading.Lock()
CRASH_MESSAGE = ("the collector process died (killed, out of memory or power loss) while "
                 "this benchmark ran; the run was recovered at the next start")


def owner_for(store: SQLiteStore) -> OwnerLock:
    """This process's journal owner token for `store` (one lock file, held until exit)."""
    key = Path(str(store.path))
    with _owners_lock:
        if key not in _owners:
            _owners[key] = OwnerLock(key)
        return _owners[key]


@atexit.register
def _release_owners() -> None:
    """At a normal exit, close and remove this process's owner lock files (a killed process
    leaves its own, and the lock on it dies with it). Not in a forked child: the files are
    its parent's."""
    with _owners_lock:
        for owner in _owners.values():
            if owner.pid == os.getpid():
                owner.close()
        _owners.clear()


class Journal:
    """One run's journal in the local store. Journalling is best effort: a store error
    disables it for this run (logged once); the run is still kept in memory and stored
    whole at its end, as before."""

    def __init__(self, store: SQLiteStore | None, run_id: str, header: dict[str, Any],
                 started: datetime) -> None:
        self._store = store
        self.run_id = run_id
        self._seq = itertools.count()
        if store is not None:
            owner = owner_for(store).token
            self._write(lambda: store.journal_begin(run_id, owner, header, started))

    def _write(self, action: Callable[[], None]) -> None:
        if self._store is None:
            return
        try:
            action()
        except StoreError as exc:
            log.warning("run %s is not journalled (a crash now would lose its finished "
                        "results): %s", self.run_id, exc)
            self._store = None

    def started(self, position: int, spec: BenchmarkSpec) -> None:
        store = self._store
        if store is not None:
            seq = next(self._seq)
            self._write(lambda: store.journal_entry(self.run_id, seq, position, "started",
                                                    spec.model_dump_json()))

    def finished(self, position: int, result: BenchmarkResult) -> None:
        store = self._store
        if store is not None:
            seq = next(self._seq)
            self._write(lambda: store.journal_entry(self.run_id, seq, position, "finished",
                                                    result.model_dump_json()))

    def close(self) -> None:
        """The run is stored: the journal goes."""
        store = self._store
        if store is not None:
            self._write(lambda: store.journal_end(self.run_id))


def _header(suite: str, env: Environment, started: datetime, purpose: str) -> dict[str, Any]:
    return {"suite": suite, "host": env.host, "started_at": started.isoformat(),
            "collector_version": __version__, "purpose": purpose,
            "environment": env.model_dump(mode="json")}


def rebuild_run(journal: dict[str, Any]) -> RunResult:
    """The aborted run a dead process's journal stands for: every finished repetition
    combined per benchmark, a benchmark that had started but finished nothing as an
    aborted failure, the run marked aborted. Entries that no longer validate are skipped."""
    header = journal["header"]
    env = Environment.model_validate(header["environment"])
    slots: dict[int, dict[str, Any]] = {}
    last: datetime = journal["started_at"]
    for _seq, position, kind, document, recorded in journal["entries"]:
        slot = slots.setdefault(position, {"finished": [], "spec": None, "at": None})
        last = max(last, recorded)
        try:
            if kind == "started":
                slot["spec"] = BenchmarkSpec.model_validate_json(document)
                slot["at"] = recorded
            else:
                slot["finished"].append(BenchmarkResult.model_validate_json(document))
                slot["at"] = None
        except ValidationError as exc:
            log.warning("run %s: a journal entry no longer validates, skipped: %s",
                        journal["run_id"], str(exc).splitlines()[0])
    results: list[BenchmarkResult] = []
    for position in sorted(slots):
        slot = slots[position]
        if slot["finished"]:
            results.append(combine(slot["finished"]))
        elif slot["spec"] is not None and slot["at"] is not None:
            spec: BenchmarkSpec = slot["spec"]
            results.append(BenchmarkResult(
                spec=spec, series_id=spec.series_id(env.host), status="failed",
                started_at=slot["at"], finished_at=max(slot["at"], last), environment=env,
                failure=Failure(kind=FailureKind.ABORTED, message=CRASH_MESSAGE)))
    return RunResult(run_id=journal["run_id"], suite=header["suite"], host=header["host"],
                     started_at=journal["started_at"], finished_at=last,
                     collector_version=header["collector_version"], results=tuple(results),
                     aborted=True, purpose=header.get("purpose", "scheduled"))


def recover_crashed_runs(store: SQLiteStore) -> list[RunResult]:
    """Store, as aborted runs, the journals of collector processes that died mid-run (their
    lock file is free), and close those journals. A journal that cannot be rebuilt stays,
    logged, for a later version to read; a store error is logged and retried next time."""
    owner = owner_for(store)
    recovered: list[RunResult] = []
    try:
        journals = store.open_journals()
    except (StoreError, ValueError) as exc:
        log.error("cannot read the run journal: %s", exc)
        return recovered
    for journal in journals:
        if owner.alive(journal["owner"]):
            continue  # a run in progress in a live process (this one or another)
        try:
            if not journal["stored"]:
                run = rebuild_run(journal)
                store.record_run(run)
                recovered.append(run)
                log.warning("run %s of suite %s was in progress when its collector died: "
                            "stored as aborted with %d result(s)", run.run_id, run.suite,
                            len(run.results))
            store.journal_end(journal["run_id"])
            owner.forget(journal["owner"])
        except (StoreError, ValueError, KeyError, TypeError) as exc:
            log.error("cannot recover run %s from its journal: %s", journal["run_id"], exc)
    return recovered

