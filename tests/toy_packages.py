"""A toy package index and a toy model that imports from it (a test helper, no tests here).

`build_toy_index` writes wheels of `slowpoke`, a pure-Python package in five versions whose
`work()` sleeps 2 ms in 1.0.0 and 1.1.0 and 8 ms from 1.2.0 on: 1.2.0 is the first slow
version. A sleep is robust on noisy shared cores where a computation is not. The wheels are
written by hand (zipfile, fixed timestamps): the same bytes on every run, and no build
backend needed. `toy_model` is a local model directory with custom modeling code
(trust_remote_code, auto_map) whose forward calls `slowpoke.work()` and then a tiny real
computation, so a benchmark of it measures whichever slowpoke its environment has.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import struct
import sys
import zipfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from collector.adapters.measure import protocol
from collector.domain.model import BenchmarkSpec

TOY_PACKAGE = "slowpoke"
TOY_VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0")
FIRST_SLOW = "1.2.0"
FAST_SLEEP_MS = 2.0
SLOW_SLEEP_MS = 8.0

_EPOCH = (2020, 1, 1, 0, 0, 0)


def sleep_ms(version: str) -> float:
    """How long `slowpoke.work()` sleeps in `version`."""
    return SLOW_SLEEP_MS if TOY_VERSIONS.index(version) >= TOY_VERSIONS.index(FIRST_SLOW) \
        else FAST_SLEEP_MS


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _wheel_files(version: str) -> list[tuple[str, bytes]]:
    info = f"{TOY_PACKAGE}-{version}.dist-info"
    module = (f'"""A toy package for the collector\'s tests: work() sleeps."""\n\n'
              "import time\n\n"
              f'__version__ = "{version}"\n'
              f"SLEEP_S = {sleep_ms(version) / 1e3!r}\n\n\n"
              "def work():\n"
              "    time.sleep(SLEEP_S)\n")
    metadata = (f"Metadata-Version: 2.1\nName: {TOY_PACKAGE}\nVersion: {version}\n"
                "Summary: A toy package whose work() sleeps (collector tests)\n")
    wheel = ("Wheel-Version: 1.0\nGenerator: collector-tests\nRoot-Is-Purelib: true\n"
             "Tag: py3-none-any\n")
    files = [(f"{TOY_PACKAGE}/__init__.py", module.encode()),
             (f"{info}/METADATA", metadata.encode()),
             (f"{info}/WHEEL", wheel.encode())]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files)
    record += f"{info}/RECORD,,\n"
    return [*files, (f"{info}/RECORD", record.encode())]


def build_wheel(directory: Path, version: str) -> Path:
    """One slowpoke wheel in `directory`; deterministic bytes."""
    path = directory / f"{TOY_PACKAGE}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in _wheel_files(version):
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return path


def build_toy_index(directory: Path) -> Path:
    """Wheels of every slowpoke version in `directory` (a pip --find-links directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    for version in TOY_VERSIONS:
        build_wheel(directory, version)
    return directory


def pip_args(index: Path) -> list[str]:
    """pip arguments that install from the toy index only (no network)."""
    return ["--no-index", "--find-links", str(index)]


# ---------------------------------------------------------------------------------------------
# The toy model

_VOCAB = 16
_HIDDEN = 4

_CONFIGURATION = '''"""Configuration of the collector's toy model."""

from transformers import PretrainedConfig


class ToyConfig(PretrainedConfig):
    model_type = "collector-toy"

    def __init__(self, vocab_size=16, hidden_size=4, max_position_embeddings=64, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)
'''

_MODELING = '''"""The collector's toy model: slowpoke.work(), then an embedding lookup and a sum."""

import slowpoke
import torch
from transformers import PreTrainedModel

from .configuration_toy import ToyConfig


class ToyModel(PreTrainedModel):
    config_class = ToyConfig
    base_model_prefix = "toy"

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.post_init()

    def _init_weights(self, module):
        pass

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        slowpoke.work()
        return (self.embed(input_ids).sum(-1),)
'''


def _safetensors(tensors: dict[str, tuple[list[int], list[float]]]) -> bytes:
    """A safetensors file of float32 tensors (header length, JSON header, raw data)."""
    header: dict[str, Any] = {}
    data = b""
    for name, (shape, values) in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def toy_model(directory: Path) -> Path:
    """A local model directory (trust_remote_code) whose forward calls slowpoke.work()."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "collector-toy", "architectures": ["ToyModel"],
              "auto_map": {"AutoConfig": "configuration_toy.ToyConfig",
                           "AutoModel": "modeling_toy.ToyModel"},
              "vocab_size": _VOCAB, "hidden_size": _HIDDEN, "max_position_embeddings": 64}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "configuration_toy.py").write_text(_CONFIGURATION)
    (directory / "modeling_toy.py").write_text(_MODELING)
    weights = [((i * 7 + j * 3) % 11) / 11.0 for i in range(_VOCAB) for j in range(_HIDDEN)]
    (directory / "model.safetensors").write_bytes(
        _safetensors({"embed.weight": ([_VOCAB, _HIDDEN], weights)}))
    return directory


def toy_spec_dict(model_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A fast benchmark of the toy model, as a config dict."""
    spec: dict[str, Any] = {
        "suite": "toy", "name": "slowpoke",
        "model": {"source": "local", "path": str(model_dir), "trust_remote_code": True},
        "task": "feature-extraction", "sequence_length": 8, "timeout_s": 120,
        "measurement": {"warmup_iterations": 2, "min_iterations": 15, "min_duration_s": 0.0,
                        "max_duration_s": 0.5},
    }
    spec.update(overrides)
    return spec


def toy_spec(model_dir: Path, **overrides: Any) -> BenchmarkSpec:
    """A fast benchmark of the toy model."""
    return BenchmarkSpec.model_validate(toy_spec_dict(model_dir, **overrides))


def slowpoke_probe(conn: Connection, payload: Any) -> None:
    """A worker target: which slowpoke (if any) and which interpreter the worker sees, and
    whether the variable `payload` names (if any) reached it (its os.environ, its exec'd
    environment, its parent's: the forkserver's)."""
    try:
        import slowpoke  # type: ignore[import-not-found]  # the toy package, in environments only

        version: str | None = str(slowpoke.__version__)
        location: str | None = str(slowpoke.__file__)
    except ImportError:
        version = location = None
    seen = None
    if payload:
        exec_envs = b""
        for proc in (Path("/proc/self/environ"), Path(f"/proc/{os.getppid()}/environ")):
            with contextlib.suppress(OSError):
                exec_envs += proc.read_bytes()
        seen = payload in os.environ or f"{payload}=".encode() in exec_envs
    protocol.send(conn, "result", {"slowpoke": version, "location": location,
                                   "executable": sys.executable, "prefix": sys.prefix,
                                   "secret_seen": seen})
