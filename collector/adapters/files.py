"""Files the collector reads and writes for a user: read with a bound (a file that is not
what it should be, /dev/zero or an endless pipe say, fails at the bound instead of filling
memory), written whole or not at all (a temporary file renamed into place).

Every file the collector reads goes through `read_bounded` (directly, or `read_text`), with
the bound of its kind: a results document or a series file MAX_DOCUMENT_BYTES, a
configuration MAX_CONFIG_BYTES (adapters/config/bounds.py), a secret (the alerts token, the
database URL file) MAX_SECRET_BYTES, a package environment's manifest MAX_MANIFEST_BYTES.
At most bound + 1 bytes are ever read, in chunks, so neither a huge file nor an endless
stream costs more than the bound."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from collector.domain.errors import InputError, OutputError

# A results document of the default config is about 0.5 MB (raw samples included); a long
# A/B or a year of one series by hand stays far below. json.loads makes about ten times the
# text's size of Python objects: 64 MiB is well under a gigabyte of them.
MAX_DOCUMENT_BYTES = 64 << 20
MAX_SECRET_BYTES = 64 << 10  # a token or a URL is under a kilobyte
MAX_MANIFEST_BYTES = 1 << 20  # a package environment's manifest is a few KiB
_CHUNK = 1 << 20


def size_text(limit: int) -> str:
    """A bound in words: 64 MiB, 64 KiB, 100 bytes."""
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if limit >= 1 << shift and limit % (1 << shift) == 0:
            return f"{limit >> shift} {unit}"
    return f"{limit:,} bytes"


class ReadFailure(Exception):
    """Why a bounded read failed, without the path (each caller reports it its own way:
    an InputError, a ConfigProblem, a store error); `line` where known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def read_bounded(path: str | Path, limit: int) -> bytes:
    """The file's bytes, at most `limit` of them; ReadFailure otherwise. Reads at most
    limit + 1 bytes whatever the file is (a regular file's size is checked first)."""
    chunks: list[bytes] = []
    total = 0
    try:
        with Path(path).open("rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > limit:
                raise ReadFailure(f"larger than {size_text(limit)}")
            while total <= limit:
                chunk = handle.read(min(_CHUNK, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    except FileNotFoundError:
        raise ReadFailure("file not found") from None
    except OSError as exc:
        raise ReadFailure(f"cannot read: {exc.strerror or exc}") from None
    if total > limit:
        raise ReadFailure(f"larger than {size_text(limit)}")
    return b"".join(chunks)


def decode(data: bytes) -> str:
    """UTF-8 text (a byte order mark is allowed); ReadFailure naming the line otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ReadFailure(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", line) from None


def read_text(path: str | Path, *, limit: int = MAX_DOCUMENT_BYTES, what: str = "file") -> str:
    """A UTF-8 text file of at most `limit` bytes; InputError naming the file otherwise."""
    try:
        return decode(read_bounded(path, limit))
    except ReadFailure as failure:
        where = f"{path}:{failure.line}" if failure.line is not None else str(path)
        reason = failure.reason
        if reason == "file not found":
            reason = "cannot read: file not found"
        elif reason.startswith("larger than"):
            reason += f"; not a {what}"
        raise InputError(f"{where}: {reason}") from None


def write_atomic(path: Path, text: str, *, what: str = "results") -> None:
    """`text` at `path`, whole or not at all; OutputError when it cannot be written."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {what} to {path}: {exc.strerror or exc}") from None
