"""The released versions of a package on the index pip uses (for `collector bisect`)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence

from collector.adapters.redact import remember_urls, scrub
from collector.analysis.bisect import select_versions
from collector.domain.errors import CollectorError, one_line

_FROM_VERSIONS = re.compile(r"\(from versions: ([^)]*)\)")
_AVAILABLE = re.compile(r"^Available versions: (.*)$", re.MULTILINE)


class VersionListError(CollectorError):
    """The versions of a package could not be read from the package index."""



def _listed(package: str, pip_args: Sequence[str], python: str) -> list[str]:
    """Every version of `package` the index offers (pre-releases too): `pip index
    versions`, else the list pip prints when a requirement cannot be met."""
    base = [python, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    index = subprocess.run([*base, "index", "versions", package, "--pre", *pip_args],
                           capture_output=True, text=True, timeout=300, check=False)
    found = _AVAILABLE.search(index.stdout)
    if index.returncode == 0 and found:
        return [v.strip() for v in found.group(1).split(",") if v.strip()]
    # Older pips, or an index command that refuses these options: ask for a version that
    # cannot exist and read the "(from versions: ...)" pip answers with.
    probe = subprocess.run([*base, "download", "--no-deps", "--pre", "--dest",
                            "/nonexistent-collector-probe", f"{package}==0+none.probe",
                            *pip_args], capture_output=True, text=True, timeout=300,
                           check=False)
    listed = _FROM_VERSIONS.search(probe.stderr + probe.stdout)
    if listed is None:
        tail = (index.stderr or probe.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise VersionListError(f"cannot list the versions of {package} on the index: "
                               f"{scrub(one_line(tail[0]))}")  # pip may quote the index URL
    names = listed.group(1).strip()
    return [] if names == "none" else [v.strip() for v in names.split(",") if v.strip()]


def available_versions(package: str, good: str, bad: str, *, pip_args: Sequence[str] = (),
                       python: str = sys.executable) -> list[str]:
    """The released versions of `package` from `good` to `bad` inclusive on the index pip
    uses with `pip_args` (e.g. --find-links DIR --no-index, --index-url URL)."""
    remember_urls(" ".join(pip_args))  # an --index-url with a token: never shown
    return select_versions(_listed(package, pip_args, python), good, bad, package)
