"""The attention and kernel choices of a spec, in the worker: what cannot run here (a clear
`backend_unavailable` instead of a traceback), the SDPA kernel held around the timed calls,
and the Hugging Face `kernels` package's Hub kernels.

- `attn_implementation` goes to from_pretrained (the backend's load_kwargs); a model class
  that does not implement the asked one (GPT-2 has no flex_attention in transformers 5.24)
  is said before loading, from the class's `_supports_*` flags, and transformers' own
  refusal is turned into the same failure where the class is only known once loading.
- `sdpa_backend` restricts torch's scaled_dot_product_attention to one kernel with
  `torch.nn.attention.sdpa_kernel` for the whole measurement: warm-up, first call and every
  timed call. Those switches are process-wide (not thread-local), so continuous batching's
  scheduler thread runs under them too. A kernel that cannot take the call (efficient or
  cudnn on a CPU; on CUDA a dtype, mask or head size the kernel does not take) makes torch
  raise "No viable backend": that is backend_unavailable, not an exception of the model.
  (Under batching such an error stays in the scheduler's thread and fails the requests.)
- `kernels` kernelizes the loaded model on its device (`set_use_kernels(True)`: the layers
  transformers maps to Hub kernels are replaced); the package fetches its kernels from the
  Hugging Face Hub, so without the package, or without the Hub, it is backend_unavailable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import transformers

from collector.adapters.measure.isolation import WorkerFailure
from collector.adapters.measure.tasks import batching
from collector.domain.model import Attention, BenchmarkSpec, FailureKind, SdpaBackend
from collector.domain.workload import CUDA_SDPA_BACKENDS

# A model class's flag for each attention transformers checks one for.
_SUPPORT_FLAGS = {Attention.SDPA: "_supports_sdpa", Attention.FLASH: "_supports_flash_attn",
                  Attention.FLEX: "_supports_flex_attn"}
# What transformers says when a model class lacks the implementation asked for.
_NOT_SUPPORTED = "does not support an attention implementation"
# What torch says when no enabled SDPA kernel can take a call.
_NO_VIABLE = "No viable backend for scaled_dot_product_attention"
_KERNELS_HOW = "pip install kernels; it fetches kernels from the Hugging Face Hub"


def _sdp_backend(choice: SdpaBackend) -> Any:
    from torch.nn.attention import SDPBackend

    return {SdpaBackend.MATH: SDPBackend.MATH, SdpaBackend.FLASH: SDPBackend.FLASH_ATTENTION,
            SdpaBackend.EFFICIENT: SDPBackend.EFFICIENT_ATTENTION,
            SdpaBackend.CUDNN: SDPBackend.CUDNN_ATTENTION}[choice]


def kernels_problem() -> str | None:
    """Why transformers here cannot kernelize (None: it can)."""
    from transformers.utils import import_utils

    if import_utils.is_kernels_available():
        return None
    low = getattr(import_utils, "KERNELS_MIN_VERSION", None)
    high = getattr(import_utils, "KERNELS_MAX_VERSION", None)
    wanted = f" (transformers {transformers.__version__} takes {low} <= version < {high})" if (
        low and high) else ""
    try:
        from importlib import metadata

        installed = metadata.version("kernels")
    except metadata.PackageNotFoundError:
        return ("kernels: true needs the Hugging Face kernels package, which is not installed "
                f"in the worker's environment{wanted}: {_KERNELS_HOW}, so the worker must "
                "reach the Hub or find them in its cache")
    return (f"kernels: true needs a kernels package transformers can use; kernels {installed} "
            f"is installed{wanted}: {_KERNELS_HOW}")


def problem_before_loading(spec: BenchmarkSpec) -> str | None:
    """What keeps this spec's attention or kernels from running here, known before the
    model is loaded; None when they may run."""
    if spec.sdpa_backend in CUDA_SDPA_BACKENDS and not spec.device.startswith("cuda"):
        assert spec.sdpa_backend is not None
        return (f"sdpa_backend {spec.sdpa_backend.value} is a CUDA kernel of "
                f"scaled_dot_product_attention; torch {torch.__version__} has no CPU kernel "
                f"for it and this benchmark runs on {spec.device}: use math or flash")
    if spec.attn_implementation is Attention.FLEX and not _flex_available():
        return (f"attn_implementation flex_attention needs torch's flex_attention, which "
                f"torch {torch.__version__} here does not offer to transformers "
                f"{transformers.__version__}: use sdpa or eager")
    if spec.batching is not None:
        unavailable = batching.attention_problem(spec)
        if unavailable is not None:
            return unavailable
    if spec.kernels:
        return kernels_problem()
    return None


def _flex_available() -> bool:
    check = getattr(transformers.utils, "is_torch_flex_attn_available", None)
    return bool(check()) if check is not None else True


def check_model_class(cls: Any, spec: BenchmarkSpec) -> None:
    """backend_unavailable when the model class does not implement the attention asked for
    (said by its class flag, before loading)."""
    attention = spec.attn_implementation
    flag = _SUPPORT_FLAGS.get(attention) if attention is not None else None
    if flag is None or getattr(cls, flag, True) is not False:
        return
    assert attention is not None
    others = [a.value for a in (Attention.EAGER, *_SUPPORT_FLAGS)
              if a is not attention and (a is Attention.EAGER
                                         or getattr(cls, _SUPPORT_FLAGS[a], False))]
    raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, (
        f"{cls.__name__} does not support attn_implementation {attention.value} in "
        f"transformers {transformers.__version__} (its {flag} is False); it runs "
        f"{', '.join(others)}"))


@contextlib.contextmanager
def loading(spec: BenchmarkSpec) -> Iterator[None]:
    """Around from_pretrained: transformers' refusal of the attention asked for (a model
    known only once loading, an Auto class) as backend_unavailable."""
    try:
        yield
    except (ValueError, ImportError) as exc:
        if spec.attn_implementation is None or _NOT_SUPPORTED not in str(exc):
            raise
        first = str(exc).split(". ")[0]
        raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, (
            f"attn_implementation {spec.attn_implementation.value} cannot run this model "
            f"(transformers {transformers.__version__}: {first})")) from None


def kernelize(model: Any, spec: BenchmarkSpec) -> None:
    """The Hub kernels in place of the layers transformers maps to them, on the model's
    device (call after moving it there). Failures (the Hub out of reach, no kernel for this
    device) are backend_unavailable."""
    if not spec.kernels:
        return
    unavailable = kernels_problem()
    if unavailable is not None:
        raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, unavailable)
    try:
        model.set_use_kernels(True)
    except Exception as exc:  # any failure to fetch or apply a Hub kernel is the same
        raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, (
            f"kernels could not kernelize the model on {spec.device} ({type(exc).__name__}: "
            f"{str(exc)[:300]}); the kernels package fetches its kernels from the Hugging "
            "Face Hub: the worker must reach it or find them in its cache")) from None


# What torch.compile raises when inductor cannot compile a graph.
_COMPILE_ERRORS = frozenset({"InductorError", "BackendCompilerFailed", "LoweringException"})


@contextlib.contextmanager
def measuring(spec: BenchmarkSpec) -> Iterator[None]:
    """Around everything that runs the model (first call, warm-up, timed calls): the SDPA
    kernel held, and what the attention cannot do here said as backend_unavailable."""
    with _flex_compile_failures(spec), sdpa_kernel(spec):
        yield


@contextlib.contextmanager
def _flex_compile_failures(spec: BenchmarkSpec) -> Iterator[None]:
    """flex_attention inside a graph inductor cannot lower (torch 2.13 on a CPU: the
    compile backend's whole-model graph fails at the flex_attention node, while transformers'
    own compiled flex kernel runs under the eager backend) as backend_unavailable."""
    try:
        yield
    except Exception as exc:
        if (spec.attn_implementation is not Attention.FLEX
                or type(exc).__name__ not in _COMPILE_ERRORS):
            raise
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, (
            f"flex_attention does not compile inside backend {spec.backend}'s graph on "
            f"{spec.device} with torch {torch.__version__} ({type(exc).__name__}: "
            f"{first[:200]}); backend eager runs it (transformers compiles the flex kernel on "
            "its own)")) from None


@contextlib.contextmanager
def sdpa_kernel(spec: BenchmarkSpec) -> Iterator[None]:
    """torch's SDPA restricted to the spec's kernel while inside (nothing when unset); a
    call no enabled kernel can take is backend_unavailable."""
    if spec.sdpa_backend is None:
        yield
        return
    from torch.nn.attention import sdpa_kernel as restricted

    try:
        with restricted(_sdp_backend(spec.sdpa_backend)):
            yield
    except RuntimeError as exc:
        if _NO_VIABLE not in str(exc):
            raise
        raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, (
            f"sdpa_backend {spec.sdpa_backend.value} cannot run this model's attention on "
            f"{spec.device} with {spec.dtype.value} (torch {torch.__version__}: "
            f"{str(exc).splitlines()[0][:300]}); leave sdpa_backend unset for torch's "
            "choice, or pick another")) from None

