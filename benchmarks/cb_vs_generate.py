"""Continuous batching vs one request at a time: the same N prompts through transformers'
continuous batching (the collector's worker code, collector/adapters/measure/tasks/batching.py)
and through generate() one after the other (greedy, batch 1), on synthetic Llamas.

Workload (default): 16 prompts of 64 tokens, 16 new tokens each (exactly: no EOS), prompts
from the collector's seeded builder (batching seed 0), so both modes see the same token ids.
The continuous-batching cache is sized for the workload (32 blocks of 256 tokens,
max_batch_tokens 1024: the 16 prefills fit in one step), since transformers' defaults on a
CPU take 60% of the memory and fill a max_batch_tokens x cache-tokens attention mask first.

Models (LlamaForCausalLM, random weights, torch.manual_seed(0)):

  tiny   configs/default.yml's llama-tiny: 2 layers x 128 hidden, 4 heads (2 KV), vocab 4096;
  small  4 layers x 512 hidden, 8 heads (4 KV), intermediate 1376, vocab 8192.

Each (round, model, mode) runs in a fresh Python process (this script with --child), one
torch thread as in configs/default.yml: it builds the model, runs `--warmup` passes, then
times passes over the N requests until `--min-passes` and `--seconds` are both reached; a
pass is the wall time of all N requests (continuous batching: one batch; generate: N calls in
sequence). Its figure is the median pass. The two modes alternate (their order flips every
round), so a slow minute of the shared machine hits both. Reported per model: output
tokens/s of each mode (median over rounds) and the ratio CB / generate (median over rounds
and [min, max] across rounds: a ratio of two figures from neighbouring processes).

    .venv/bin/python benchmarks/cb_vs_generate.py [--rounds 3] [--models tiny,small]
        [--requests 16] [--input-tokens 64] [--new-tokens 16] [--seconds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

MODELS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 4096,
             "max_position_embeddings": 512, "pad_token_id": 0, "bos_token_id": 1,
             "eos_token_id": 2},
    "small": {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4,
              "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 8192,
              "max_position_embeddings": 512, "pad_token_id": 0, "bos_token_id": 1,
              "eos_token_id": 2},
}
MODES = ("cb", "generate")


def _spec(model: str, requests: int, input_tokens: int, new_tokens: int) -> Any:
    from collector.domain.model import BenchmarkSpec

    return BenchmarkSpec.model_validate({
        "suite": "bench", "name": f"cb-{model}", "threads": 1,
        "model": {"source": "synthetic", "architecture": "LlamaForCausalLM",
                  "config": MODELS[model]},
        "batching": {"requests": requests, "input_tokens": {"mean": input_tokens},
                     "output_tokens": {"mean": new_tokens}, "num_blocks": 2 * requests,
                     "max_batch_tokens": requests * input_tokens}})


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One mode on one model in this (fresh) process: the median pass over the N requests."""
    import torch
    import transformers

    from collector.adapters.measure.tasks import batching

    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(1)
    spec = _spec(args.model, args.requests, args.input_tokens, args.new_tokens)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**MODELS[args.model])).eval()
    runner: Any = None
    if args.mode == "cb":
        runner = batching.BatchRunner(model, spec)
        requests = runner.requests

        def run_pass() -> int:
            outcome = runner.step()
            return sum(r.output_tokens for r in outcome.records)
    else:
        assert spec.batching is not None
        requests = batching.build_requests(spec.batching, model.config)
        config = transformers.GenerationConfig(do_sample=False, num_beams=1, pad_token_id=0,
                                               eos_token_id=None)
        prompts = [torch.tensor([r.input_ids]) for r in requests]

        def run_pass() -> int:
            tokens = 0
            with torch.inference_mode():
                for ids, r in zip(prompts, requests, strict=True):
                    out = model.generate(ids, attention_mask=torch.ones_like(ids),
                                         generation_config=config,
                                         max_new_tokens=r.output_tokens,
                                         min_new_tokens=r.output_tokens)
                    tokens += out.shape[1] - ids.shape[1]
            return tokens
    try:
        for _ in range(args.warmup):
            run_pass()
        times: list[float] = []
        tokens = 0
        start = time.perf_counter()
        while len(times) < args.min_passes or time.perf_counter() - start < args.seconds:
            t0 = time.perf_counter()
            tokens = run_pass()
            times.append(time.perf_counter() - t0)
    finally:
        if runner is not None:
            runner.close()
    expected = sum(r.output_tokens for r in requests)
    if tokens != expected:
        raise SystemExit(f"{args.mode}: {tokens} output tokens, expected {expected}")
    median = statistics.median(times)
    return {"model": args.model, "mode": args.mode, "passes": len(times),
            "pass_s": median, "tokens": tokens, "tokens_per_s": tokens / median,
            "attention": str(model.config._attn_implementation)}


def _run_child(model: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", model,
           "--mode", mode, "--requests", str(args.requests),
           "--input-tokens", str(args.input_tokens), "--new-tokens", str(args.new_tokens),
           "--seconds", str(args.seconds), "--min-passes", str(args.min_passes),
           "--warmup", str(args.warmup)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False,
                          timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{model} {mode} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="tiny,small")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--input-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--min-passes", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    models = args.models.split(",")
    out = sys.stderr if args.json else sys.stdout
    print(f"load average at start: {os.getloadavg()}", file=out)
    rows: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        for model in models:
            order = MODES if rnd % 2 == 0 else MODES[::-1]
            for mode in order:
                row = {"round": rnd, **_run_child(model, mode, args)}
                rows.append(row)
                print(f"round {rnd} {model:5} {mode:8} {row['tokens_per_s']:9.1f} tok/s "
                      f"(pass {row['pass_s'] * 1e3:.1f} ms, {row['passes']} passes, "
                      f"{row['attention']})", file=out)
    print(f"load average at end: {os.getloadavg()}", file=out)
    summary = {}
    for model in models:
        by_round = {(r["round"], r["mode"]): r["tokens_per_s"] for r in rows
                    if r["model"] == model}
        ratios = [by_round[(i, "cb")] / by_round[(i, "generate")] for i in range(args.rounds)]
        summary[model] = {
            "cb_tokens_per_s": statistics.median(by_round[(i, "cb")]
                                                 for i in range(args.rounds)),
            "generate_tokens_per_s": statistics.median(by_round[(i, "generate")]
                                                       for i in range(args.rounds)),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios)}
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary}, indent=1))
        return
    print(f"\n{args.requests} requests x {args.input_tokens} prompt tokens, "
          f"{args.new_tokens} new tokens, 1 torch thread, {args.rounds} rounds")
    print(f"{'model':6} {'CB tok/s':>9} {'generate tok/s':>15} {'CB/generate':>12} "
          f"{'[min, max]':>14}")
    for model, s in summary.items():
        print(f"{model:6} {s['cb_tokens_per_s']:9.1f} {s['generate_tokens_per_s']:15.1f} "
              f"{s['ratio_median']:12.2f} [{s['ratio_min']:.2f}, {s['ratio_max']:.2f}]")


if __name__ == "__main__":
    main()
