"""Files the collector reads and writes for a user: read with a bound (a file that is not
what it should be, /dev/zero say, fails at the bound instead of filling memory), written
whole or not at all (a temporary file renamed into place)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from collector.domain.errors import InputError, OutputError

# A results document of the default config is about 0.5 MB (raw samples included); a long
# A/B or a year of one series by hand stays far below.
MAX_DOCUMENT_BYTES = 256 << 20


def read_text(path: str | Path, *, limit: int = MAX_DOCUMENT_BYTES, what: str = "file") -> str:
    """A UTF-8 text file of at most `limit` bytes; InputError naming the file otherwise."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: cannot read: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise InputError(f"{path}: larger than {limit >> 20} MiB; not a {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


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
