"""The picklable worker entry point. Importing this module does not import torch: the
parent pickles a reference to `benchmark` and only the worker process resolves it."""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Any


def benchmark(conn: Connection, payload: dict[str, Any]) -> None:
    from collector.adapters.measure import worker

    worker.run(conn, payload)
