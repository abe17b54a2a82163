"""Tiny synthetic models and fast measurement settings shared by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]

FAST_MEASUREMENT = {"warmup_iterations": 1, "min_iterations": 3, "min_duration_s": 0.0,
                    "max_duration_s": 0.3}

TINY_MODELS: dict[str, dict[str, Any]] = {
    "gpt2": {"source": "synthetic", "architecture": "GPT2LMHeadModel",
             "config": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 128,
                        "vocab_size": 512, "bos_token_id": 1, "eos_token_id": 2}},
    "llama": {"source": "synthetic", "architecture": "LlamaForCausalLM",
              "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "num_key_value_heads": 1,
                         "vocab_size": 512, "max_position_embeddings": 128,
                         "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}},
    "bert": {"source": "synthetic", "architecture": "BertForSequenceClassification",
             "config": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2,
                        "intermediate_size": 64, "vocab_size": 512}},
    "bert-base": {"source": "synthetic", "architecture": "BertModel",
                  "config": {"num_hidden_layers": 1, "hidden_size": 32,
                             "num_attention_heads": 2, "intermediate_size": 64,
                             "vocab_size": 512}},
    "vit": {"source": "synthetic", "architecture": "ViTForImageClassification",
            "config": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2,
                       "intermediate_size": 64, "image_size": 32, "patch_size": 8,
                       "num_labels": 3}},
    "whisper": {"source": "synthetic", "architecture": "WhisperForConditionalGeneration",
                "config": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1,
                           "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                           "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_mel_bins": 16,
                           "max_source_positions": 16, "max_target_positions": 32,
                           "vocab_size": 512, "pad_token_id": 0, "bos_token_id": 1,
                           "eos_token_id": 2, "decoder_start_token_id": 1}},
    "clip": {"source": "synthetic", "architecture": "CLIPModel",
             "config": {"projection_dim": 16,
                        "text_config": {"hidden_size": 32, "intermediate_size": 64,
                                        "num_hidden_layers": 1, "num_attention_heads": 2,
                                        "vocab_size": 512, "max_position_embeddings": 32,
                                        "bos_token_id": 1, "eos_token_id": 2,
                                        "pad_token_id": 0},
                        "vision_config": {"hidden_size": 32, "intermediate_size": 64,
                                          "num_hidden_layers": 1, "num_attention_heads": 2,
                                          "image_size": 32, "patch_size": 8}}},
}


def spec_dict(model_name: str, **overrides: Any) -> dict[str, Any]:
    """A BenchmarkSpec as a dict: a tiny model, short inputs, fast measurement."""
    spec: dict[str, Any] = {"suite": "test", "name": model_name,
                            "model": TINY_MODELS[model_name],
                            "sequence_length": 8, "new_tokens": 4, "timeout_s": 120,
                            "measurement": FAST_MEASUREMENT}
    spec.update(overrides)
    return spec


def benchmark_yaml(model_name: str, name: str | None = None, **fields: Any) -> dict[str, Any]:
    """A benchmark entry as it appears in a config file."""
    entry: dict[str, Any] = {"name": name or model_name, "model": TINY_MODELS[model_name],
                             "sequence_length": 8, "new_tokens": 4,
                             "measurement": FAST_MEASUREMENT}
    entry.update(fields)
    return entry


def make_run(*, suite: str = "s", host: str = "host-a", when: Any = None,
             models: tuple[str, ...] = ("bert", "vit"), latency: float = 0.01,
             samples: int = 20, fail: str | None = None,
             run_id: str | None = None, environment: dict[str, Any] | None = None,
             other_cpu_fraction: float | None = None,
             metrics: dict[str, float] | None = None) -> Any:
    """A RunResult as the engine would produce it, without running anything: one result
    per model, latency metrics around `latency`, `samples` raw samples each; the model
    named `fail` (if any) fails with a timeout. `environment` overrides fields of the
    captured environment (versions, hardware); `other_cpu_fraction` adds a noise probe;
    `metrics` adds or overrides metrics of every result."""
    import uuid
    from datetime import datetime, timedelta, timezone

    from collector.adapters.host import capture_host
    from collector.domain.model import (
        BenchmarkResult,
        BenchmarkSpec,
        Failure,
        FailureKind,
        MeasurementInfo,
        NoiseProbe,
        RunResult,
        Task,
    )

    start = when or datetime.now(timezone.utc)
    env = capture_host(host)
    if environment:
        env = env.model_copy(update=environment)
    noise = None if other_cpu_fraction is None else NoiseProbe(
        wall_s=1.0, self_cpu_s=1.0, other_cpu_s=other_cpu_fraction * 2,
        other_cpu_fraction=other_cpu_fraction)
    results = []
    for offset, model_name in enumerate(models):
        spec = BenchmarkSpec.model_validate(spec_dict(model_name, suite=suite))
        began = start + timedelta(seconds=offset)
        ended = began + timedelta(milliseconds=500)
        common: dict[str, Any] = {"spec": spec, "series_id": spec.series_id(host),
                                  "started_at": began, "finished_at": ended,
                                  "environment": env}
        if model_name == fail:
            results.append(BenchmarkResult(**common, status="failed", failure=Failure(
                kind=FailureKind.TIMEOUT, message="took too long")))
            continue
        values = [latency * (1 + 0.01 * (i % 5)) for i in range(samples)]
        results.append(BenchmarkResult(
            **common, status="ok", resolved_task=Task.TEXT_CLASSIFICATION,
            metrics={"latency_p50_seconds": latency, "latency_p90_seconds": latency * 1.1,
                     "throughput_samples_per_second": 1 / latency,
                     "peak_rss_bytes": 3e8, **(metrics or {})},
            samples={"latency_seconds": values}, noise=noise,
            measurement=MeasurementInfo(iterations=samples, warmup_iterations=1,
                                        duration_s=0.2, target_rel_ci=0.01,
                                        achieved_rel_ci=0.005, converged=True,
                                        stop_reason="converged")))
    return RunResult(run_id=run_id or uuid.uuid4().hex, suite=suite, host=host,
                     started_at=start, finished_at=start + timedelta(seconds=len(models)),
                     collector_version="0.1.0", results=tuple(results))


def run_collector(*args: str, cwd: Path = ROOT,
                  timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python -m collector ARGS` as a user runs it (wide output, no hub access); never
    raises for its exit code."""
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "collector", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def save_tiny_model(directory: Path, model_class: str, config_class: str,
                    **config: Any) -> Path:
    """A tiny model with random weights saved with save_pretrained into `directory` (a
    user's own checkpoint), built in a child process: the test process never imports torch
    (tests/integration/test_tasks.py holds the parent to that)."""
    script = ("import json, sys, transformers\n"
              "model, config, kwargs, out = sys.argv[1:]\n"
              "cfg = getattr(transformers, config)(**json.loads(kwargs))\n"
              "getattr(transformers, model)(cfg).save_pretrained(out)\n")
    subprocess.run([sys.executable, "-c", script, model_class, config_class,
                    json.dumps(config), str(directory)], check=True, timeout=300,
                   capture_output=True)
    return directory
