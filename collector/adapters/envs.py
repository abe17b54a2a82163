"""Package environments: a set of pinned packages, built once with pip into a cached virtual
environment, in which benchmark workers then run (docs/environments.md).

An environment is `python -m venv --without-pip` plus a `.pth` file in its site-packages that
adds the base interpreter's site-packages *after* its own (`site.addsitedir`): the pinned
packages, installed into the environment, shadow the base's, and everything else (torch,
transformers, the collector itself) is the base's, never installed twice. pip is the base's,
run with `--python <env>`: it sees the base's packages as installed (they are on the
environment's sys.path), so only what is pinned or missing is installed.

The cache lives in $COLLECTOR_ENV_CACHE (default ~/.cache/collector/envs), one directory per
key (`<key[:16]>`), the key being a hash of the pins, the base interpreter (path and
version), the base's torch version and the pip arguments. An environment is built in a
temporary sibling directory, verified (its interpreter imports the collector, torch and the
pinned packages and reports the pinned versions), given its `manifest.json` last and only
then renamed into place: a directory with a manifest is complete, and a hit reads only the
manifest. A lock file per key keeps two processes from building the same key at once.

This module never imports torch: versions come from package metadata.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import site
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from packaging.version import Version

from collector.adapters.files import MAX_MANIFEST_BYTES, ReadFailure, read_bounded
from collector.adapters.measure.scrub import is_secret
from collector.adapters.redact import redact_urls, remember_urls, scrub
from collector.domain.errors import CollectorError, InputError, one_line
from collector.domain.packages import ALWAYS_RECORDED, Pin, record_names

ENV_CACHE = "COLLECTOR_ENV_CACHE"
MANIFEST = "manifest.json"
BASE_PTH = "zz-collector-base.pth"  # sorts last: runs after the env's own .pth files
PIP_TIMEOUT_S = 1800.0
VERIFY_TIMEOUT_S = 300.0
_KEY_LENGTH = 16
_ERROR_LINES = 12
_BUILD_PREFIX = ".build-"
_TRASH_PREFIX = ".trash-"


class EnvironmentBuildError(CollectorError):
    """An environment could not be built: no such version, no wheel for this platform, a
    resolution conflict, pip missing. The message names the pins and pip's reason."""

    def __init__(self, message: str) -> None:
        super().__init__(scrub(one_line(message)))  # pip may quote an index URL


@dataclass(frozen=True)
class BuiltEnvironment:
    """An environment ready to run workers in (`python` is its interpreter)."""

    key: str
    path: Path
    python: str
    pins: tuple[Pin, ...]
    versions: dict[str, str]
    cache_hit: bool
    build_s: float


@dataclass(frozen=True)
class CacheEntry:
    """A built environment in the cache."""

    key: str
    pins: tuple[Pin, ...]
    size_bytes: int
    last_used: datetime
    path: Path
    versions: dict[str, str] = field(default_factory=dict)
    created: datetime | None = None


@dataclass(frozen=True)
class _Base:
    """What an environment reuses and what its key depends on."""

    python: str
    prefix: str
    version: str
    site_packages: tuple[str, ...]
    torch_version: str | None
    versions: dict[str, str]  # ALWAYS_RECORDED, as the base has them


def describe_interpreter() -> dict[str, Any]:
    """This interpreter's prefix, version, site-packages (in sys.path order) and the
    versions of ALWAYS_RECORDED (None where missing), as JSON-ready data."""
    sites = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        sites.insert(0, site.getusersitepackages())
    versions: dict[str, str | None] = {name: None for name in ALWAYS_RECORDED}
    versions.update(base_versions(ALWAYS_RECORDED))
    return {"prefix": sys.prefix, "version": sys.version, "site_packages": sites,
            "versions": versions}


_DESCRIBE = ("import json, collector.adapters.envs as e; "
             "print(json.dumps(e.describe_interpreter()))")


def _describe(python: str) -> dict[str, Any]:
    """describe_interpreter() of `python`: in this process when it is this interpreter (no
    interpreter start on a cache hit), else in a subprocess."""
    if Path(python).absolute() == Path(sys.executable).absolute():
        return describe_interpreter()
    try:
        done = subprocess.run([python, "-c", _DESCRIBE], capture_output=True, text=True,
                              timeout=VERIFY_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentBuildError(f"the base interpreter {python} does not run: {exc}") \
            from None
    if done.returncode != 0:
        raise EnvironmentBuildError(f"the base interpreter {python} cannot describe itself "
                                    f"(is the collector installed for it?): "
                                    f"{_tail(done.stderr)}")
    return dict(json.loads(done.stdout))


def _tail(text: str, lines: int = _ERROR_LINES) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(kept[-lines:]) or "(no output)"


_VERSIONS_LISTED = re.compile(r"\(from versions: ([^)]*)\)")
_VERSIONS_SHOWN = 8


def _shorter_versions(line: str) -> str:
    """pip's "(from versions: ...)" list of every release, shortened to its newest few."""
    def shorten(match: re.Match[str]) -> str:
        versions = [v.strip() for v in match.group(1).split(",") if v.strip()]
        if len(versions) <= _VERSIONS_SHOWN:
            return match.group(0)
        return (f"(from versions: {versions[0]}, ... {len(versions) - _VERSIONS_SHOWN} more"
                f" ..., {', '.join(versions[-_VERSIONS_SHOWN + 1:])})")

    return _VERSIONS_LISTED.sub(shorten, line)


def pip_reason(output: str) -> str:
    """pip's relevant lines, in one line: its errors, then a conflict's explanation."""
    errors: list[str] = []
    conflict: list[str] = []
    in_conflict = False
    for raw in output.splitlines():
        line = raw.strip()
        if line.startswith("ERROR:"):
            text = line.removeprefix("ERROR:").strip()
            if text and not text.startswith("ResolutionImpossible"):
                errors.append(_shorter_versions(text))
            in_conflict = False
        elif line.startswith("The conflict is caused by:"):
            in_conflict = True
        elif in_conflict and line:
            conflict.append(line)
        else:
            in_conflict = False
    relevant = errors[-_ERROR_LINES:]
    if conflict:
        relevant.append("the conflict is caused by: " + ", ".join(conflict[:_ERROR_LINES]))
    return "; ".join(relevant) if relevant else _tail(output)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _dir_size(path: Path) -> int:
    """Bytes of the files under `path` (links not followed)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(folder) / name).lstat().st_size
    return total


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically (a temporary file, then a rename)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    partial.replace(path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (blocking; the kernel drops it if this process dies)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_VERIFY = """
import importlib, importlib.metadata as m, json, sys
pinned, recorded = %r, %r
import collector
try:
    import torch
except ModuleNotFoundError:
    if "torch" in pinned:
        raise
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
def canonical(name):
    return name.lower().replace("_", "-").replace(".", "-")
owners = m.packages_distributions()
for name in pinned:
    mine = sorted(mod for mod, dists in owners.items() if mod.isidentifier()
                  and not mod.startswith("_") and name in {canonical(d) for d in dists})
    for module in [mod for mod in mine if canonical(mod) == name] or mine:
        importlib.import_module(module)
print(json.dumps({n: version(n) for n in recorded}))
"""


def _entry(folder: Path, manifest: dict[str, Any]) -> CacheEntry:
    return CacheEntry(
        key=str(manifest["key"]),
        pins=tuple(Pin(str(p["name"]), str(p["version"])) for p in manifest["pins"]),
        size_bytes=int(manifest.get("size_bytes", 0)),
        last_used=datetime.fromisoformat(manifest["last_used"]),
        path=folder, versions={str(k): str(v) for k, v in manifest.get("versions", {}).items()},
        created=datetime.fromisoformat(manifest["created"]) if "created" in manifest else None)


def _env_python(folder: Path) -> Path:
    return folder / "bin" / "python"


class EnvironmentCache:
    """Builds environments on first use and finds them again (a cache hit reads only the
    manifest: well under a second, no pip, no interpreter)."""

    def __init__(self, root: Path | None = None, *, pip_args: Sequence[str] = (),
                 base_python: str | None = None,
                 pip_timeout_s: float = PIP_TIMEOUT_S) -> None:
        """`root`: default $COLLECTOR_ENV_CACHE, else ~/.cache/collector/envs. `pip_args`:
        passed to every pip install (part of the key). `base_python`: the interpreter whose
        packages environments reuse (default: this one)."""
        env_root = os.environ.get(ENV_CACHE)
        self.root = root if root is not None else (
            Path(env_root) if env_root else Path.home() / ".cache" / "collector" / "envs")
        self.pip_args = tuple(pip_args)
        remember_urls(" ".join(self.pip_args))  # an --index-url with a token: never shown
        self.base_python = base_python or sys.executable
        self.pip_timeout_s = pip_timeout_s
        self._base_info: _Base | None = None

    # -- keys -----------------------------------------------------------------------------

    def _base(self) -> _Base:
        if self._base_info is None:
            info = _describe(self.base_python)
            versions = {k: v for k, v in info["versions"].items() if v is not None}
            self._base_info = _Base(
                python=self.base_python, prefix=str(info["prefix"]),
                version=str(info["version"]),
                site_packages=tuple(str(p) for p in info["site_packages"]),
                torch_version=versions.get("torch"), versions=versions)
        return self._base_info

    def key(self, pins: Sequence[Pin]) -> str:
        """The cache key of `pins` on this base with these pip arguments (sha256, hex)."""
        base = self._base()
        material = {"pins": [str(p) for p in sorted(set(pins))],
                    "python": str(Path(base.python).absolute()), "python_version": base.version,
                    "torch": base.torch_version, "pip_args": list(self.pip_args)}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    # -- ensure ---------------------------------------------------------------------------

    def ensure(self, pins: Sequence[Pin]) -> BuiltEnvironment:
        """The environment of `pins`, built if it is not cached yet (EnvironmentBuildError if
        it cannot be). No pins: the base interpreter itself, no virtual environment."""
        started = time.monotonic()
        chosen = tuple(sorted(set(pins)))
        _check_unique(chosen)
        base = self._base()
        key = self.key(chosen)
        if not chosen:
            return BuiltEnvironment(key=key, path=Path(base.prefix), python=base.python,
                                    pins=(), versions=dict(base.versions), cache_hit=True,
                                    build_s=0.0)
        folder = self.root / key[:_KEY_LENGTH]
        hit = self._hit(folder, key, started)
        if hit is not None:
            return hit
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EnvironmentBuildError(f"cannot create the environment cache {self.root}: "
                                        f"{exc}") from None
        try:
            with _locked(self.root / f"{key[:_KEY_LENGTH]}.lock"):
                hit = self._hit(folder, key, started)  # another process built it meanwhile
                if hit is not None:
                    return hit
                versions = self._build_into(folder, key, chosen, base)
        except OSError as exc:  # the cache's disk: full, read-only, permissions
            raise EnvironmentBuildError(
                f"could not build the environment {', '.join(str(p) for p in chosen)} in "
                f"{self.root}: {exc}") from None
        return BuiltEnvironment(key=key, path=folder, python=str(_env_python(folder)),
                                pins=chosen, versions=versions, cache_hit=False,
                                build_s=time.monotonic() - started)

    def _build_into(self, folder: Path, key: str, pins: tuple[Pin, ...],
                    base: _Base) -> dict[str, str]:
        """Build in a sibling, manifest last, rename into place (called under the key's
        lock); the recorded versions. Nothing stays of a build that fails."""
        for stale in self.root.glob(f"{_BUILD_PREFIX}{key[:_KEY_LENGTH]}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a build killed half-way
        partial = self.root / f"{_BUILD_PREFIX}{key[:_KEY_LENGTH]}-{uuid.uuid4().hex[:8]}"
        try:
            versions = self._build(partial, pins, base)
            now = _now().isoformat()
            _write_json(partial / MANIFEST, {
                "key": key, "pins": [{"name": p.name, "version": p.version} for p in pins],
                "versions": versions, "created": now, "last_used": now,
                "base_python": base.python,
                "pip_args": [redact_urls(arg) for arg in self.pip_args],  # no index token
                "size_bytes": _dir_size(partial)})
            if folder.exists():  # a directory without a manifest: never complete
                shutil.rmtree(folder)
            partial.rename(folder)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return versions

    def _hit(self, folder: Path, key: str, started: float) -> BuiltEnvironment | None:
        manifest_path = folder / MANIFEST
        try:
            manifest = json.loads(read_bounded(manifest_path, MAX_MANIFEST_BYTES))
        except (ReadFailure, ValueError):
            return None
        if manifest.get("key") != key:
            return None  # a prefix collision or a foreign directory: rebuilt
        manifest["last_used"] = _now().isoformat()
        with contextlib.suppress(OSError):
            _write_json(manifest_path, manifest)
        entry = _entry(folder, manifest)
        return BuiltEnvironment(key=key, path=folder, python=str(_env_python(folder)),
                                pins=entry.pins, versions=entry.versions, cache_hit=True,
                                build_s=time.monotonic() - started)

    def _build(self, folder: Path, pins: tuple[Pin, ...], base: _Base) -> dict[str, str]:
        """venv, .pth to the base, pip install, verify; the recorded versions."""
        described = ", ".join(str(p) for p in pins)
        self._run([base.python, "-m", "venv", "--without-pip", str(folder)],
                  f"creating a virtual environment for {described} failed", timeout=300)
        python = _env_python(folder)
        purelib = self._run([str(python), "-c",
                             "import sysconfig; print(sysconfig.get_path('purelib'))"],
                            f"the new environment for {described} does not run",
                            timeout=VERIFY_TIMEOUT_S).strip()
        lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in base.site_packages)
        (Path(purelib) / BASE_PTH).write_text(lines)
        self._pip(base, python, pins, described)
        recorded = record_names(pins)
        output = self._run([str(python), "-c", _VERIFY % ([p.name for p in pins], recorded)],
                           f"the environment for {described} was built, but its "
                           "interpreter cannot import the collector, torch or a pinned package",
                           timeout=VERIFY_TIMEOUT_S)
        found = json.loads(output.strip().splitlines()[-1])
        wrong = [f"{p.name} is {found.get(p.name) or 'missing'}, not {p.version}"
                 for p in pins if found.get(p.name) is None
                 or Version(found[p.name]) != Version(p.version)]
        if wrong:
            raise EnvironmentBuildError(
                f"the environment for {described} does not have the pinned versions: "
                f"{'; '.join(wrong)}")
        return {name: version for name, version in found.items() if version is not None}

    def _pip(self, base: _Base, python: Path, pins: tuple[Pin, ...], described: str) -> None:
        command = [base.python, "-m", "pip", "--python", str(python), "install",
                   "--disable-pip-version-check", "--no-input", "--no-warn-script-location",
                   *self.pip_args, *(str(p) for p in pins)]
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=self.pip_timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise EnvironmentBuildError(
                f"could not build the environment {described}: pip did not finish within "
                f"{self.pip_timeout_s:g} s") from None
        except OSError as exc:
            raise EnvironmentBuildError(f"could not build the environment {described}: "
                                        f"{exc}") from None
        if done.returncode == 0:
            return
        output = f"{done.stdout}\n{done.stderr}"
        if "No module named pip" in output:
            raise EnvironmentBuildError(
                f"could not build the environment {described}: the base interpreter "
                f"{base.python} has no pip (install it: {base.python} -m ensurepip)")
        raise EnvironmentBuildError(f"could not build the environment {described}: pip "
                                    f"install failed: {pip_reason(output)}")

    @staticmethod
    def _run(command: list[str], what: str, *, timeout: float) -> str:
        """Run one step of a build; its stdout. The new interpreter runs the pinned
        packages' code (their .pth files, their imports): never with the collector's
        secrets (collector/adapters/measure/scrub.py)."""
        clean = {k: v for k, v in os.environ.items() if not is_secret(k, v)}
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env=clean, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EnvironmentBuildError(f"{what}: {exc}") from None
        if done.returncode != 0:
            raise EnvironmentBuildError(f"{what}: {_tail(done.stderr or done.stdout)}")
        return done.stdout

    # -- listing and pruning --------------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        """The complete environments in the cache, least recently used first."""
        found = []
        if not self.root.is_dir():
            return []
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                found.append(_entry(folder, json.loads(read_bounded(folder / MANIFEST,
                                                                    MAX_MANIFEST_BYTES))))
            except (ReadFailure, ValueError, KeyError, TypeError):
                continue  # not an environment (or not a complete one)
        return sorted(found, key=lambda e: (e.last_used, e.key))

    def prune(self, *, max_bytes: int | None = None,
              max_age_days: float | None = None) -> list[CacheEntry]:
        """Remove environments unused for more than `max_age_days`, then the least recently
        used until the rest fit in `max_bytes`; the ones removed. Also clears what killed
        builds left behind. An environment being built is never touched (its lock)."""
        removed: list[CacheEntry] = []
        entries = self.entries()
        now = _now()
        if max_age_days is not None:
            for entry in list(entries):
                if (now - entry.last_used).total_seconds() > max_age_days * 86400:
                    if self._remove(entry):
                        removed.append(entry)
                    entries.remove(entry)
        if max_bytes is not None:
            total = sum(e.size_bytes for e in entries)
            for entry in list(entries):
                if total <= max_bytes:
                    break
                if self._remove(entry):
                    removed.append(entry)
                    total -= entry.size_bytes
        self._clear_leftovers()
        return removed

    def _remove(self, entry: CacheEntry) -> bool:
        lock = self.root / f"{entry.path.name}.lock"
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # being (re)built right now
            trash = self.root / f"{_TRASH_PREFIX}{entry.path.name}-{uuid.uuid4().hex[:8]}"
            try:
                entry.path.rename(trash)  # gone at once for ensure(); deleted at leisure
            except OSError:
                return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def _clear_leftovers(self) -> None:
        for path in self.root.glob(f"{_TRASH_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in self.root.glob(f"{_BUILD_PREFIX}*"):
            key = path.name[len(_BUILD_PREFIX):].split("-", 1)[0]
            with (self.root / f"{key}.lock").open("a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a build in progress
                shutil.rmtree(path, ignore_errors=True)


def _check_unique(pins: tuple[Pin, ...]) -> None:
    names = [p.name for p in pins]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"{', '.join(twice)} pinned more than once: give one version per "
                         "package")


def base_versions(names: Sequence[str]) -> dict[str, str]:
    """Installed versions of `names` in this interpreter (missing ones omitted)."""
    found = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found
