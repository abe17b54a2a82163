"""Imported last by the valgrind forkserver (collector/adapters/measure/valgrind.py): everything
before it in the preload list is imported, so the server is ready to fork workers. It says so by
creating the file its launcher named in $COLLECTOR_VALGRIND_READY."""

import os
from pathlib import Path

_READY = os.environ.get("COLLECTOR_VALGRIND_READY")
if _READY:
    Path(_READY).touch()
