"""Continuous batching in the worker: N seeded requests through transformers' paged-attention
scheduler (`ContinuousBatchingManager`), one batch per measured iteration.

How one iteration runs. One manager is created before the first call, warmed up and started
once, and kept running (its background thread waits on an event between batches); each step
submits the N requests with `add_request` and waits for their N results; `close` stops and
destroys it. This is what `generate_batch(..., persistent_manager=True)` does, without what
would make it a poor benchmark step: generate_batch stops the manager's thread after every
call (restoring the attention, running gc.collect() inside the timed region), takes one
`max_new_tokens` for all requests, and logs and swallows a failed generation instead of
raising. Warm-up iterations (measure()'s) thus run the very scheduler, cache and thread the
timed ones run.

What a request generates. `add_request` takes a per-request `max_new_tokens`; with
`eos_token_id=-1` (no end of sequence) every request generates exactly its drawn output
length, as min_new_tokens = max_new_tokens does for generate() (random weights that happen to
emit EOS would otherwise shorten the run). Decoding is greedy.

What is turned off so a batch measures what it says:
- prefix (block) sharing: the same N prompts come back every iteration, and with sharing on
  the cache keeps their complete prompt blocks, so from the second batch on prefill would be
  mostly skipped; each batch is measured as prompts seen for the first time;
- the automatic switch to flash attention (`auto_switch_to_flash`): the attention measured is
  the benchmark's (`eager` runs as transformers' `paged|eager`, `sdpa` as sdpa, flash as the
  flash kernels where installed on CUDA).

Prompts: token ids drawn from `random.Random(batching.seed)` in [4, vocab) avoiding the
model's pad/bos/eos ids; lengths from `Lengths` (the same draw order every time: input
length, output length, then the ids, request after request). The generator of the load
generator (collector/adapters/load/prompts.py) draws lengths the same way.

Times: transformers stamps each request with time.perf_counter() (created, no longer pending,
finished, one stamp per generated token); they are turned into `RequestRecord`s relative to
the batch's start, so TTFT includes the wait for a place in the batch, as a server's client
would see it.

KV cache: `kv_cache_blocks` is the cache's capacity in whole-model blocks (page_size tokens
of every layer), as the manager sized it. The share of it in use is sampled in a forward
pre-hook on the model, i.e. after the scheduler allocated the blocks of each step and before
the step runs; the peak over a batch is reported only when the hook saw every step (a CUDA
graph replay runs no hook: then there is no figure rather than a wrong one). Preemptions:
transformers 5.24 counts none where a caller can read them (a request that does not fit waits
or is offloaded), so none is reported.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collector.adapters.load.prompts import draw_length
from collector.adapters.measure.isolation import WorkerFailure
from collector.domain.backends.compile import CompileSettings
from collector.domain.load_stats import RequestRecord
from collector.domain.model import Attention, BenchmarkSpec, FailureKind
from collector.domain.serving import Batching

# Ids below this are usually special tokens (pad/bos/eos/unk) in any vocabulary.
LOW_IDS = 4
# How long one wait for a result may take before the manager's thread is checked for life.
_POLL_S = 1.0


@dataclass(frozen=True)
class Request:
    """One prompt of the batch and how many tokens it generates."""

    input_ids: tuple[int, ...]
    output_tokens: int


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch (one measured iteration) returns: a record per request, in the order
    they were submitted, and the peak share of KV cache blocks in use (None: not seen)."""

    records: tuple[RequestRecord, ...]
    kv_peak_usage: float | None


def _special_ids(config: Any) -> set[int]:
    ids: set[int] = set()
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(config, name, None)
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, int):
                ids.add(item)
    return ids


def build_requests(batching: Batching, config: Any) -> list[Request]:
    """The batch's N prompts, reproducible from `batching.seed`."""
    text = getattr(config, "get_text_config", lambda: config)()
    vocab = int(text.vocab_size)
    special = _special_ids(text)
    allowed = [i for i in range(min(LOW_IDS, vocab - 1), vocab) if i not in special]
    if not allowed:
        raise WorkerFailure(FailureKind.EXCEPTION,
                            f"the model's vocabulary ({vocab} ids) has no ordinary token")
    rng = random.Random(batching.seed)  # noqa: S311 - a seeded workload, not a secret
    requests = []
    for _ in range(batching.requests):
        n_in = draw_length(batching.input_tokens, rng)
        n_out = draw_length(batching.output_tokens, rng)
        requests.append(Request(tuple(rng.choices(allowed, k=n_in)), n_out))
    return requests


def check_positions(requests: Sequence[Request], config: Any) -> None:
    """Fail clearly when a request would run past the model's position limit."""
    text = getattr(config, "get_text_config", lambda: config)()
    limit = getattr(text, "max_position_embeddings", None) or getattr(text, "n_positions", None)
    longest = max(len(r.input_ids) + r.output_tokens for r in requests)
    if isinstance(limit, int) and longest > limit:
        raise WorkerFailure(FailureKind.EXCEPTION, (
            f"a batching request needs {longest} positions (input + output tokens) but the "
            f"model supports at most {limit}; lower batching.input_tokens/output_tokens "
            "(mean or spread)"))


def _api() -> tuple[Any, Any, Any]:
    """transformers' CompileConfig, ContinuousBatchingConfig and WorkloadHints, or
    backend_unavailable (a package environment may hold a transformers without them)."""
    try:
        from transformers import CompileConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig
        from transformers.generation.continuous_batching.utils import WorkloadHints
    except ImportError as exc:
        import transformers

        raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, (
            f"transformers {transformers.__version__} has no continuous batching API this "
            f"collector can drive ({exc}); batching needs transformers 5.24 or newer")) from None
    return CompileConfig, ContinuousBatchingConfig, WorkloadHints


def _cb_config(spec: BenchmarkSpec) -> Any:
    compile_config, cb_config, _ = _api()
    batching = spec.batching
    assert batching is not None
    options: dict[str, Any] = {"allow_block_sharing": False, "auto_switch_to_flash": False}
    if batching.page_size is not None:
        options["page_size"] = batching.page_size
    if batching.num_blocks is not None:
        options["num_blocks"] = batching.num_blocks
    if batching.max_batch_tokens is not None:
        options["max_batch_tokens"] = batching.max_batch_tokens
    if spec.backend == "compile":
        # Paged attention is excluded from the graph (torch.compiler.disable), so never
        # fullgraph (capabilities refuses fullgraph: true with batching).
        settings = spec.settings(CompileSettings)
        compiled = compile_config(mode=settings.mode, fullgraph=False, dynamic=settings.dynamic)
        options["varlen_compile_config"] = compiled
        options["decode_compile_config"] = copy.deepcopy(compiled)
    return cb_config(**options)


def _generation_config(model: Any, requests: Sequence[Request]) -> Any:
    config = copy.deepcopy(model.generation_config)
    config.update(max_new_tokens=max(r.output_tokens for r in requests), do_sample=False,
                  num_beams=1, max_length=None, min_length=None, eos_token_id=-1)
    if config.pad_token_id is None:
        config.pad_token_id = 0
    return config


class BatchRunner:
    """A started continuous-batching manager and the step that runs the N requests through
    it. `close` (always: the worker calls it in a finally) stops and destroys it."""

    def __init__(self, model: Any, spec: BenchmarkSpec) -> None:
        assert spec.batching is not None
        self.requests = build_requests(spec.batching, model.config)
        check_positions(self.requests, model.config)
        self._model = model
        self._steps_seen = 0
        self._peak = 0.0
        self._manager: Any = None
        attention = spec.attn_implementation
        # The hints generate_batch gives (they size the decode fast path and the requests
        # per step).
        hints = _api()[2](max_prompt_length=max(len(r.input_ids) for r in self.requests),
                          max_generated_length=max(r.output_tokens for r in self.requests),
                          num_requests=len(self.requests))
        cb_config = _cb_config(spec)
        try:
            manager = model.init_continuous_batching(
                generation_config=_generation_config(model, self.requests),
                continuous_batching_config=cb_config, workload_hints=hints)
        except (ValueError, NotImplementedError, ImportError) as exc:  # what it refuses
            what = attention.value if attention is not None else "the model's default"
            raise WorkerFailure(FailureKind.BACKEND_UNAVAILABLE, (
                f"continuous batching cannot run this model with attention {what} here "
                f"(transformers: {str(exc)[:400]}); it runs eager (as paged|eager), sdpa, "
                "or flash_attention_2 on CUDA with flash-attn installed")) from None
        self._manager = manager
        self._hook = model.register_forward_pre_hook(self._sample_usage)
        manager.warmup()
        manager.start()

    @property
    def kv_cache_blocks(self) -> int | None:
        processor = getattr(self._manager, "batch_processor", None)
        cache = getattr(processor, "cache", None)
        return None if cache is None else int(cache.num_blocks)

    def _sample_usage(self, _module: Any, _args: Any) -> None:
        processor = self._manager.batch_processor
        if processor is None:
            return
        used = 1.0 - float(processor.cache.compute_free_capacity(relative=True))
        self._steps_seen += 1
        self._peak = max(self._peak, used)

    def step(self) -> BatchOutcome:
        """Submit the N requests at once and wait for all of them."""
        manager = self._manager
        self._steps_seen = 0
        self._peak = 0.0
        steps_before = getattr(manager, "current_batch", 0)
        start = time.perf_counter()
        ids = [manager.add_request(list(r.input_ids), max_new_tokens=r.output_tokens,
                                   record_timestamps=True, eos_token_id=-1)
               for r in self.requests]
        if any(i is None for i in ids):
            raise WorkerFailure(FailureKind.EXCEPTION, (
                "the continuous batching manager refused requests (it is stopping or its "
                "queue is full)"))
        results: dict[str, Any] = {}
        while len(results) < len(ids):
            result = manager.get_result(timeout=_POLL_S)
            if result is None:
                if not manager.is_running():
                    raise WorkerFailure(FailureKind.EXCEPTION, (
                        f"the continuous batching thread stopped with {len(ids) - len(results)}"
                        " of its requests unfinished (see the worker's log)"))
                continue
            if result.is_finished():
                results[result.request_id] = result
        steps = getattr(manager, "current_batch", 0) - steps_before
        peak = self._peak if steps > 0 and self._steps_seen >= steps else None
        return BatchOutcome(tuple(_record(results[i], r, start)
                                  for i, r in zip(ids, self.requests, strict=True)), peak)

    def close(self) -> None:
        hook = getattr(self, "_hook", None)
        if hook is not None:
            hook.remove()
        if self._manager is not None:
            self._manager.stop(block=True, timeout=30)
            self._manager.destroy()
            self._manager = None


def _record(output: Any, request: Request, start: float) -> RequestRecord:
    """A transformers GenerationOutput as a RequestRecord relative to the batch start."""
    stamps = tuple(t - start for t in (output.timestamps or ()))
    sent = output.created_time - start
    finished = output.lifespan[1]
    end = finished - start if finished > 0 else (stamps[-1] if stamps else sent)
    ok = output.error is None and bool(stamps)
    return RequestRecord(sent_s=sent, end_s=max(end, sent), outcome="ok" if ok else "error",
                         token_s=stamps, output_tokens=len(output.generated_tokens),
                         input_tokens=len(request.input_ids),
                         error=None if ok else str(output.error or "no token generated")[:300])


def attention_problem(spec: BenchmarkSpec) -> str | None:
    """What keeps this spec's attention from running under continuous batching on its device,
    known before loading (flash needs CUDA; transformers refuses flex_attention); None when
    it may run."""
    if spec.attn_implementation is Attention.FLEX:
        return ("flex_attention does not run under continuous batching: transformers' "
                "scheduler takes paged|eager, sdpa or a flash implementation only; use eager "
                "(paged|eager) or sdpa, or benchmark flex_attention without batching")
    if spec.attn_implementation is Attention.FLASH and not spec.device.startswith("cuda"):
        return ("flash_attention_2 under continuous batching needs a CUDA device and the "
                f"flash-attn package (or the kernels hub package); this benchmark runs on "
                f"{spec.device}: use eager (paged|eager) or sdpa")
    return None
