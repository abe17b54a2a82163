"""Do our load generator's TTFT and ITL medians agree with guidellm's on the same server?

One `transformers serve` instance (continuous batching, CPU) of a tiny synthetic
LlamaForCausalLM (hidden 128, 2 layers, vocabulary 4096, random weights,
torch.manual_seed(0); the offline word-level tokenizer of
collector/adapters/measure/tokenizer.py; no end-of-sequence token, so every answer has
exactly max_tokens tokens). Then `--rounds` rounds, each running our load generator
(collector.adapters.load.loadgen.run_load) and guidellm (the reference, from its own
virtualenv: it is not a dependency of the project) one after the other, the order
alternated from round to round so that the machine's drift cancels out.

The same workload for both: the same list of prompts, in the same order (synthetic, seeded:
`--input-tokens` words `w3`..`w4095`, one token each), `max_tokens` `--output-tokens`, the
streaming /v1/completions endpoint, the same model name, synchronous (one request at a
time) or `--concurrency K` (K in flight, closed loop); `--warmup` requests first, then
`--requests` measured. guidellm gets the prompts as a JSON Lines file (column `prompt`)
and max_tokens as its backend's `max_tokens`: a dataset column of output lengths would make
it send vLLM's `ignore_eos`, which `transformers serve` refuses (HTTP 422 "Unexpected
fields in the request"). Its warm-up is `warmup=<warmup - 1>` in requests: guidellm 0.8.1
also counts the request that crosses the warm-up boundary as warm-up, so warmup=k drops
k + 1 requests (checked: the script fails when guidellm measured fewer than
`--requests` - 1, and says so when its count differs from ours).

Definitions (both tools time one streamed text chunk as one token: here every chunk is one
token, and the server's usage says `--output-tokens`):

- TTFT. Ours: first text chunk read - just before the POST (keep-alive connection, opened
  by the warm-up). guidellm: first text line - the moment httpx starts sending the request
  headers (its trace hook; a new connection per request, whose connect is therefore left
  out). Both medians over the measured requests.
- ITL. Ours (`inter_token_latency_p50_seconds`): the median of every gap between
  consecutive token arrivals, all requests' gaps pooled. guidellm's `inter_token_latency_ms`
  is per request (last token - first token) / (output tokens - 1), i.e. the request's mean
  gap, and its percentiles weight each request by output tokens - 1 (equal weights here).
  That per-request formula is exactly our TPOT (`time_per_output_token_*`), so two
  comparisons are printed: ITL p50 (ours, pooled gaps) / guidellm ITL p50 (median of
  per-request means: the same quantity only when gaps are symmetric around their median),
  and TPOT p50 (ours) / guidellm ITL p50 (the same formula). The ITL means are one quantity
  in both tools (the token-weighted mean of per-request means = the mean of pooled gaps).
  guidellm's `time_per_output_token_ms` is (last token - request start) / output tokens: it
  includes TTFT, and no figure of ours is defined that way; it is kept in the JSON only.
- Percentiles: ours interpolate linearly (numpy's default); guidellm's take a sample value.
  With an odd `--requests` the TTFT and per-request medians are the same sample in both.

The server runs with `--server-threads` torch threads (OMP_NUM_THREADS; 1 by default), so
on a small shared machine the client under test has a core of its own and a busy client
does not stall the server's thread pool differently for one tool than for the other. Before
the rounds a few requests prime the server (discarded).

Modes:
- `--pin`: the server's threads on CPU 0; this process, our client, guidellm (its worker
  processes included) and the proxy on CPU 1.
- `--control`: the same rounds again against our fault server (tests/openai_fault_server.py)
  whose TTFT (`--control-ttft-ms`, 10) and token gaps (`--control-itl-ms`, 3) are sleeps and
  which needs almost no CPU: the tools against a known truth.
- `--proxy`: both tools talk to a transparent TCP proxy of ours (asyncio, its own process,
  SCHED_FIFO where allowed so its timestamps are taken when bytes arrive even with a busy
  client on its CPU) that forwards to the server and times every HTTP request on the wire:
  request boundaries on the client->server stream from the request line and Content-Length;
  on the server->client stream from the chunked body, each `data:` line with a non-empty
  choices[0].text being a token (stamped with the read that completed it), the terminating
  chunk the end. Wire TTFT = first token chunk read - the request's first byte read; wire
  ITL = gaps between token chunks (pooled p50, and p50 of per-request means: each tool's
  definition). The tool's offset = its own per-request figure - the wire's for the same
  request (matched by prompt text), p50 over requests: what the client adds or misses. The
  proxy also reports connections opened, the request body fields but the prompt, and the
  server's CPU over the measured requests (psutil at each response end); each round also
  runs our client straight to the server, so "proxy adds" = our TTFT via the proxy - direct.
- `--like-reference` (needs `--proxy`; synchronous only): right after each guidellm run,
  our client once more ("ours-like"), asking the server for the work guidellm asked for:
  the same body fields (our Target's body plus `stream_options.continuous_usage_stats:
  true`, checked against guidellm's body on the wire), the same prompts in the same order,
  warm-up included, one request at a time on one keep-alive session (our client's `send`),
  and before each request the idle time the server had before guidellm's request with that
  prompt (on the wire: its first byte - the previous response's end; 0 before the first,
  a warm-up request). Our own back-to-back turnaround on the wire (p50 of our last plain
  run through the proxy) is taken off each gap; the waits end on a polled clock. Reported:
  ours-like's figures and ratios to guidellm's (tool-reported and wire), and the pacing
  kept (ours-like's idle gaps - guidellm's, per request, on the wire).
- CPU: ours = this process's CPU during its run; guidellm = RUSAGE_CHILDREN over its run (its
  whole process tree, start-up included: every descendant is reaped when it exits); server =
  psutil CPU of the server's process tree over the run.

Latest figures, like for like (2-core shared VM, quiet: load average 0.7 -> 1.2; `--rounds 5
--requests 25 --pin --proxy --like-reference --json`; medians of the 5 rounds [min, max]):
- guidellm TTFT p50 10.55 ms (wire 9.58), ITL p50 2.52 ms (wire pooled 2.43); ours plain
  7.77 ms (wire 7.26) / 2.56 ms; ours like guidellm 9.29 ms (wire 8.50) / 3.10 ms.
- ours-like / guidellm: TTFT 0.87 [0.60, 1.20] as the tools report it, 0.89 [0.58, 1.17]
  on the wire; ITL p50 1.07 [0.78, 1.46] (tool), 1.07 [0.80, 1.49] (wire pooled), ITL mean
  1.02 [0.81, 1.40]. Ours plain / guidellm: TTFT 0.77 [0.46, 0.86], ITL 1.01 [0.56, 1.37].
- The replay held: identical body fields on the wire (only the JSON spacing differs, 12
  bytes), guidellm's idle gaps before a request p50 3.94 [3.78, 4.63] ms (2.5-8.3 ms
  per request; far shorter than the 20-100 ms of the finding below), ours-like's per
  request within +0.11 [-0.11, +0.35] ms of them (p50); one connection against guidellm's 2.
- Not within 5 %: the medians sit 11-13 % under guidellm on TTFT and 7 % over on ITL, but
  the rounds spread from 0.6 to 1.2 (TTFT) and 0.78 to 1.46 (ITL) for the same requests
  the same gaps: the server's own run-to-run variation (its ITL p50 per run of 25 requests
  ranges over 1.9-3.6 ms and its CPU over the measured requests over 1.7-3.0 s, whoever
  sends; the two move together) is larger than the difference left, so 5 rounds of 25
  requests cannot resolve 5 %. Asking for the same work closed about half of the plain TTFT
  gap (0.77 -> 0.87 tool, 0.76 -> 0.89 wire); our tool - wire TTFT offset is 0.74 ms when
  replaying gaps against 0.54 ms back to back.

Earlier figures (2-core shared VM, load average 2.6 -> 3.1; `--rounds 5 --requests 25 --pin
--proxy --control --json`; medians of the 5 rounds [min, max]):
- transformers serve. TTFT p50: ours 6.98 ms / guidellm 17.17 ms, ratio 0.48 [0.32, 0.58].
  On the wire: ours' requests 6.47 [5.29, 8.87] ms, guidellm's 15.38 [9.35, 18.88] ms
  (wire ratio 0.49 [0.28, 0.58]). Tool - wire TTFT offset: ours 0.49 [0.47, 0.60] ms
  (8.8 % of its wire TTFT), guidellm 0.58 [0.48, 0.76] ms (4.8 %). Wire ITL p50 pooled: ours
  1.93, guidellm 2.38 ms (0.76 [0.71, 1.03]); ITL offsets under 10 us for both. Client CPU
  ours 0.15 s / guidellm 6.5 s (on CPU 1, not the server's); server CPU over the measured
  requests 1.72 [1.66, 1.97] s under ours, 2.07 [1.62, 2.46] s under guidellm. guidellm kept
  2 connections for its 27 requests here (28 against the fault server), and its body adds
  `stream_options.continuous_usage_stats: true` (usage in every chunk).
- control (10 ms / 3 ms sleeps). Wire TTFT ours 10.91, guidellm 11.43 ms (0.95); offsets
  ours 0.57 [0.42, 0.61] ms, guidellm 0.48 [0.40, 0.55] ms; proxy adds 0.43 [0.18, 0.84] ms
  to our TTFT; ITL wire ratio 0.99, offsets within 3 us.
- So: both tools report what the wire shows within ~0.5-0.8 ms of TTFT (5-9 %) and a few
  us of ITL; the TTFT gap between them on transformers serve is the server answering
  guidellm's requests later (and with more CPU per request), not a measurement error.
- Why the server is slower for guidellm's requests, measured with our own client alone
  (one server, interleaved, 6 runs of 25 requests each way, pinned; /tmp scripts, not
  kept): (a) asking for `continuous_usage_stats` raises the server's TTFT p50 from 9.9 to
  11.8 ms (+19 %) and ITL from 2.19 to 2.34 ms; (b) the server's continuous-batching loop
  idles between requests: with 20 ms of idle before each request our TTFT p50 is 12.3 ms,
  with 100 ms 14.3 ms, against 10.0 ms back to back (guidellm's synchronous mode leaves
  gaps between requests while its worker processes hand work around); (c) a new connection
  per request adds ~1 ms (10.2 vs 9.2 ms). The server does more work, later, for guidellm's
  requests; each tool times faithfully what it asked for.

    .venv/bin/python benchmarks/serving_vs_reference.py \
        --reference /tmp/ref-venv/bin/python [--rounds 5] [--requests 25] [--warmup 2] \
        [--input-tokens 64] [--output-tokens 32] [--concurrency K] [--pin] [--proxy] \
        [--control] [--like-reference] [--json]

`--reference` is the Python of a virtualenv that has guidellm (`python -m guidellm`), or
the `guidellm` executable itself. Install it apart from the project, e.g.
`python3 -m venv /tmp/ref-venv && /tmp/ref-venv/bin/pip install guidellm`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from collector.adapters.load.client import (  # noqa: E402 - after the sys.path line
    Target,
    open_session,
    send,
)
from collector.adapters.load.loadgen import run_load  # noqa: E402
from collector.adapters.load.prompts import Prompt, synthetic  # noqa: E402
from collector.adapters.measure.server import (  # noqa: E402
    ServerProcess,
    ServerUnavailable,
    free_port,
    process_tree_cpu_seconds,
)
from collector.domain.load_stats import RequestRecord, summarise  # noqa: E402
from collector.domain.serving import (  # noqa: E402
    Endpoint,
    Lengths,
    LoadProfile,
    ProfileKind,
    Serving,
    SLOs,
)
from collector.domain.stats import percentile  # noqa: E402

HOST = "127.0.0.1"
GOAL = 0.05
PRIME_REQUESTS = 4
REFERENCE_TIMEOUT_S = 600
REQUEST_TIMEOUT_S = 120
# `--like-reference`: the last SPIN_S of each wait before a request is spent polling the
# clock (the event loop's sleeps wake up to ~1 ms late: epoll waits in whole milliseconds).
SPIN_S = 0.002


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def build_model(directory: Path) -> None:
    """The synthetic checkpoint, its tokenizer, and no eos in its generation config."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from collector.adapters.measure.tokenizer import make_servable

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, vocab_size=4096,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         max_position_embeddings=2048)
    LlamaForCausalLM(config).save_pretrained(str(directory))
    make_servable(directory, config)


def reference_command(reference: str) -> list[str]:
    """How to start guidellm from `--reference`; exits with the reason when it cannot."""
    path = Path(reference)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise SystemExit(f"reference tool not found: {reference} is not an executable file "
                         "(give the Python of a virtualenv with guidellm installed, e.g. "
                         "python3 -m venv /tmp/ref-venv && /tmp/ref-venv/bin/pip install "
                         "guidellm, then --reference /tmp/ref-venv/bin/python)")
    command = [str(path)] if path.name.startswith("guidellm") else [str(path), "-m",
                                                                    "guidellm"]
    try:
        probe = subprocess.run([*command, "--version"], capture_output=True, text=True,
                               timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(f"reference tool {' '.join(command)} cannot run: {exc}") from None
    if probe.returncode != 0:
        tail = (probe.stderr or probe.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"guidellm is missing or broken behind {reference} "
                         f"(`{' '.join(command)} --version` exited {probe.returncode}: "
                         f"{' | '.join(tail)})")
    return command


def profile_for(concurrency: int | None) -> LoadProfile:
    if concurrency is None:
        return LoadProfile(kind=ProfileKind.SYNCHRONOUS)
    return LoadProfile(kind=ProfileKind.CONCURRENT, concurrency=concurrency)


def run_ours(base: str, model: str, prompts: list[Prompt], *, warmup: int, requests: int,
             concurrency: int | None) -> dict[str, Any]:
    serving = Serving(endpoint=Endpoint(url=base, model_name=model), requests=requests,
                      warmup_requests=warmup, profile=profile_for(concurrency),
                      input_tokens=Lengths(mean=prompts[0].input_tokens),
                      output_tokens=Lengths(mean=prompts[0].output_tokens),
                      request_timeout_s=REQUEST_TIMEOUT_S)
    run = run_load(Target(base, model, api="completions"), serving, prompts=iter(prompts))
    return ours_figures(list(run.records), run.summary.metrics,
                        prompts[warmup:warmup + requests], "our load generator")


def ours_figures(records: list[RequestRecord], metrics: dict[str, float],
                 measured: list[Prompt], who: str) -> dict[str, Any]:
    """Our client's figures from its measured records (sent in the order of `measured`)."""
    failed = [r for r in records if r.outcome != "ok"]
    if failed or len(records) != len(measured):
        raise SystemExit(f"{who}: {len(failed)} of {len(records)} requests failed "
                         f"({failed[0].error if failed else 'count'}); expected "
                         f"{len(measured)} ok")
    tokens = {r.output_tokens for r in records} | {len(r.token_s) for r in records}
    ordered = sorted(records, key=lambda r: r.sent_s)
    per_request = {p.text: (r.token_s[0] - r.sent_s,
                            (r.token_s[-1] - r.token_s[0]) / max(len(r.token_s) - 1, 1))
                   for p, r in zip(measured, ordered, strict=True)}
    return {"per_request": per_request,
            "ttft_p50_s": metrics["time_to_first_token_p50_seconds"],
            "itl_p50_s": metrics["inter_token_latency_p50_seconds"],
            "itl_mean_s": metrics["inter_token_latency_mean_seconds"],
            "tpot_p50_s": metrics["time_per_output_token_p50_seconds"],
            "requests": len(records), "output_tokens": sorted(tokens)}


class LikeReferenceTarget(Target):
    """Our client's target asking for what guidellm 0.8.1 asks on /v1/completions: its
    body also has `stream_options.continuous_usage_stats: true` (usage in every chunk)."""

    def body(self, prompt: Prompt) -> bytes:
        document = json.loads(super().body(prompt))
        document.setdefault("stream_options", {})["continuous_usage_stats"] = True
        return json.dumps(document).encode()


async def wait_until(deadline: float) -> None:
    """Until time.perf_counter() reaches `deadline`: an event-loop sleep, then SPIN_S of
    polling (nothing else is in flight: one request at a time)."""
    coarse = deadline - time.perf_counter() - SPIN_S
    if coarse > 0:
        await asyncio.sleep(coarse)
    while time.perf_counter() < deadline:
        pass


async def _paced(target: Target, prompts: list[Prompt],
                 idle_before: dict[str, float]) -> list[RequestRecord]:
    """One request at a time on one keep-alive session (our client's `send`), each sent
    `idle_before[prompt]` seconds after the previous response ended (0 when not given)."""
    records: list[RequestRecord] = []
    async with open_session() as session:
        start = time.perf_counter()
        previous_end: float | None = None
        for prompt in prompts:
            if previous_end is not None:
                await wait_until(previous_end + idle_before.get(prompt.text, 0.0))
            record = await send(session, target, prompt, run_start=start,
                                timeout_s=REQUEST_TIMEOUT_S)
            previous_end = start + record.end_s
            records.append(record)
    return records


def run_ours_like(base: str, model: str, prompts: list[Prompt], *, warmup: int,
                  requests: int, idle_before: dict[str, float]) -> dict[str, Any]:
    """Our client sending guidellm's requests: its body fields (LikeReferenceTarget), the
    same prompts in the same order, warm-up included, and before each one the idle time the
    server had before guidellm's request with that prompt (`idle_before`, from the wire)."""
    target = LikeReferenceTarget(base, model, api="completions")
    records = asyncio.run(_paced(target, prompts[:warmup + requests], idle_before))
    measured = records[warmup:]
    duration = max(r.end_s for r in measured) - min(r.sent_s for r in measured)
    metrics = summarise(measured, duration_s=max(duration, 1e-9), slos=SLOs()).metrics
    return ours_figures(measured, metrics, prompts[warmup:warmup + requests],
                        "our client like guidellm")


def run_reference(command: list[str], base: str, model: str, prompts_file: Path,
                  out: Path, *, warmup: int, requests: int,
                  concurrency: int | None, output_tokens: int) -> dict[str, Any]:
    profile = "kind=synchronous" if concurrency is None else \
        f"kind=concurrent,streams={concurrency}"
    if warmup > 0:  # guidellm 0.8.1: warmup=k (requests) drops k + 1 requests
        profile += f",warmup={warmup - 1}"
    total = requests + warmup
    argv = [*command, "run",
            "--backend", f"kind=openai_http,target={base},model={model},"
                         f"request_format=/v1/completions,max_tokens={output_tokens}",
            "--profile", profile,
            "--constraint", f"kind=max_requests,count={total}",
            "--data", f"kind=json_file,path={prompts_file}",
            "--tokenizer", f"kind=huggingface_auto,model={model}",
            "--output", f"kind=json,path={out}",
            "--disable-console"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = out.with_suffix(".log")
    with log.open("w") as handle:
        done = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, env=env,
                              timeout=REFERENCE_TIMEOUT_S, check=False)
    if done.returncode != 0 or not out.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        raise SystemExit(f"guidellm failed (exit {done.returncode}); command:\n"
                         f"  {' '.join(argv)}\nlast lines of its log:\n" + "\n".join(tail))
    return read_reference(out, requests)


def _p50(distribution: dict[str, Any]) -> float:
    value: float = distribution["successful"]["percentiles"]["p50"]
    return value


def read_reference(out: Path, requests: int) -> dict[str, Any]:
    """guidellm's own figures (its metrics), and a recomputation from its per-request
    records with our percentile function as a check of what they mean."""
    document = json.loads(out.read_text())
    benchmark = document["benchmarks"][0]
    metrics = benchmark["metrics"]
    totals = metrics["request_totals"]
    # Its warm-up boundary is a time, found from the requests' timings: now and then one
    # request more or less falls inside it. A run short of more than one is an error.
    if totals["successful"] < requests - 1 or totals["errored"] or totals["incomplete"]:
        raise SystemExit(f"guidellm measured {totals} requests, expected {requests} "
                         f"successful (see {out})")
    records = sorted(benchmark["requests"]["successful"],
                     key=lambda r: r["info"]["timings"]["request_start"])
    records = records[-totals["successful"]:]
    ttft = sorted(r["time_to_first_token_ms"] / 1e3 for r in records)
    itl = sorted(r["inter_token_latency_ms"] / 1e3 for r in records)
    return {"ttft_p50_s": _p50(metrics["time_to_first_token_ms"]) / 1e3,
            "itl_p50_s": _p50(metrics["inter_token_latency_ms"]) / 1e3,
            "itl_mean_s": metrics["inter_token_latency_ms"]["successful"]["mean"] / 1e3,
            "tpot_incl_ttft_p50_s": _p50(metrics["time_per_output_token_ms"]) / 1e3,
            "requests": totals["successful"],
            "output_tokens": sorted({r["output_tokens"] for r in records}),
            "prompt_tokens": sorted({r["prompt_tokens"] for r in records}),
            "recomputed_ttft_p50_s": percentile(ttft, 50),
            "recomputed_itl_p50_s": percentile(itl, 50),
            "measured_prompts": [json.loads(r["request_args"])["body"]["prompt"]
                                 for r in records],
            "per_request": {json.loads(r["request_args"])["body"]["prompt"]:
                            (r["time_to_first_token_ms"] / 1e3,
                             r["inter_token_latency_ms"] / 1e3) for r in records}}


RATIOS = {  # name: (ours key, reference key)
    "ttft_p50": ("ttft_p50_s", "ttft_p50_s"),
    "itl_p50": ("itl_p50_s", "itl_p50_s"),
    "tpot_p50_vs_itl_p50": ("tpot_p50_s", "itl_p50_s"),
    "itl_mean": ("itl_mean_s", "itl_mean_s"),
}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_cpu_s(pid: int) -> float:
    """CPU seconds so far of a process and its descendants (the server's)."""
    return process_tree_cpu_seconds(pid)


def pin_server(pid: int, cpu: int) -> None:
    """Every thread of the server's processes onto `cpu` (threads made later inherit)."""
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        for thread in proc.threads():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(thread.id, {cpu})


# --- The wire-level proxy (`--proxy`) ------------------------------------------------------

PROXY_FLAG = "--proxy-worker"  # argv[1] of the proxy's own process
MAX_HEAD = 64 << 10
MAX_BODY_KEPT = 1 << 20


class _RequestParser:
    """HTTP/1.1 requests on a client->server byte stream (Content-Length bodies; no
    pipelining is assumed on the response side, requests are paired FIFO)."""

    def __init__(self, connection: int, on_request: Callable[[dict[str, Any]], None]) -> None:
        self.connection = connection
        self.on_request = on_request
        self.head = b""
        self.body = b""
        self.left = 0
        self.current: dict[str, Any] | None = None
        self.count = 0

    def feed(self, data: bytes, at: float) -> None:
        while data:
            if self.current is None or (self.left == 0 and "body_bytes" in self.current):
                self.current = {"connection": self.connection, "index_on_connection":
                                self.count, "first_byte_s": at, "tokens_s": []}
                self.count += 1
                self.head = b""
            record = self.current
            if "body_bytes" not in record:  # in the head
                self.head += data
                end = self.head.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.head) > MAX_HEAD:
                        raise ValueError("request head over 64 KiB")
                    return
                head, data = self.head[:end], self.head[end + 4:]
                lines = head.decode("latin-1").split("\r\n")
                method, _, rest = lines[0].partition(" ")
                record["method"], record["path"] = method, rest.rpartition(" ")[0]
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:])}
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    raise ValueError("chunked request bodies are not handled")
                self.left = int(headers.get("content-length", "0"))
                record["body_bytes"] = self.left
                record["head_complete_s"] = at
                self.body = b""
            take = data[:self.left]
            data = data[self.left:]
            self.left -= len(take)
            if len(self.body) < MAX_BODY_KEPT:
                self.body += take
            if self.left == 0:
                record["request_end_s"] = at
                if record["method"] == "POST":
                    with contextlib.suppress(ValueError, AttributeError):
                        body = json.loads(self.body)
                        record["prompt"] = body.pop("prompt", None)
                        record["body_fields"] = body  # the rest of it, for the record
                self.on_request(record)


class _ResponseParser:
    """HTTP/1.1 responses on the server->client stream, each paired with the oldest
    unanswered request; a chunked SSE body is split into lines: the first `data:` line with
    a non-empty choices[0].text is the first token, every such line a token (stamped with the
    arrival of the read that completed it); `data: [DONE]` or the terminating chunk ends it."""

    def __init__(self, pending: collections.deque[dict[str, Any]],
                 on_end: Callable[[dict[str, Any]], None]) -> None:
        self.pending = pending
        self.on_end = on_end
        self.state = "head"
        self.buffer = b""
        self.left = 0
        self.sse = b""
        self.record: dict[str, Any] | None = None

    def feed(self, data: bytes, at: float) -> None:  # noqa: PLR0912 - one branch a state
        self.buffer += data
        while self.buffer:
            if self.state == "head":
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = self.buffer[:end].decode("latin-1").split("\r\n")
                self.buffer = self.buffer[end + 4:]
                self.record = self.pending.popleft() if self.pending else {"tokens_s": []}
                self.record["status"] = int(lines[0].split(" ")[1])
                self.record["response_first_byte_s"] = at
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:])}
                self.sse = b""
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self.state = "size"
                else:
                    self.left = int(headers.get("content-length", "0"))
                    self.state = "plain"
                    if self.left == 0:
                        self._end(at)
            elif self.state == "plain":
                take = min(self.left, len(self.buffer))
                self.buffer = self.buffer[take:]
                self.left -= take
                if self.left == 0:
                    self._end(at)
            elif self.state == "size":
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    return
                size = int(self.buffer[:end].split(b";")[0], 16)
                self.buffer = self.buffer[end + 2:]
                self.left = size
                self.state = "data" if size else "trailer"
            elif self.state == "data":
                take = min(self.left, len(self.buffer))
                self._sse(self.buffer[:take], at)
                self.buffer = self.buffer[take:]
                self.left -= take
                if self.left == 0:
                    self.state = "crlf"
            elif self.state == "crlf":
                if len(self.buffer) < 2:
                    return
                self.buffer = self.buffer[2:]
                self.state = "size"
            elif self.state == "trailer":
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    return
                self.buffer = self.buffer[end + 2:]
                if end == 0:
                    self._end(at)

    def _sse(self, data: bytes, at: float) -> None:
        assert self.record is not None
        self.sse += data
        *lines, self.sse = self.sse.split(b"\n")
        for raw in lines:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.record.setdefault("done_s", at)
                continue
            with contextlib.suppress(ValueError, TypeError, KeyError, IndexError,
                                     AttributeError):
                if json.loads(payload)["choices"][0].get("text"):
                    self.record["tokens_s"].append(at)

    def _end(self, at: float) -> None:
        assert self.record is not None
        self.record["end_s"] = at
        self.on_end(self.record)
        self.record = None
        self.state = "head"


class _Proxy:
    """The proxy's state: every request seen since the last dump, its CPU and the server's."""

    def __init__(self, upstream: tuple[str, int], server_pid: int) -> None:
        self.upstream = upstream
        self.records: list[dict[str, Any]] = []
        self.connections = 0
        self.serial = 0
        self.server = psutil.Process(server_pid)
        self.errors: list[str] = []
        self.cpu_mark = time.process_time()

    def server_cpu(self) -> float:
        with contextlib.suppress(psutil.Error):
            times = self.server.cpu_times()
            return float(times.user + times.system)
        return float("nan")

    async def handle(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.serial += 1
        connection = self.serial
        accepted = time.perf_counter()
        server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        for writer in (client_writer, server_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending: collections.deque[dict[str, Any]] = collections.deque()

        def on_request(record: dict[str, Any]) -> None:
            record["accepted_s"] = accepted
            pending.append(record)
            self.records.append(record)

        def on_end(record: dict[str, Any]) -> None:
            record["server_cpu_at_end_s"] = self.server_cpu()  # after the forwarding

        requests = _RequestParser(connection, on_request)
        responses = _ResponseParser(pending, on_end)

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       parser: _RequestParser | _ResponseParser) -> None:
            try:
                while data := await reader.read(1 << 16):
                    at = time.perf_counter()
                    writer.write(data)  # forward first, then parse
                    try:
                        parser.feed(data, at)
                    except (ValueError, IndexError) as exc:
                        self.errors.append(f"connection {connection}: {exc}")
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()

        await asyncio.gather(pump(client_reader, server_writer, requests),
                             pump(server_reader, client_writer, responses))
        for writer in (client_writer, server_writer):
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    def dump(self, path: Path) -> None:
        """The requests and connections since the last dump, and this process's CPU."""
        cpu = time.process_time()
        document = {"records": self.records, "connections": self.connections,
                    "proxy_cpu_s": cpu - self.cpu_mark, "errors": self.errors}
        self.records, self.errors, self.connections, self.cpu_mark = [], [], 0, cpu
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(document))
        scratch.replace(path)


def realtime() -> str:
    """SCHED_FIFO for the proxy where allowed, so that its timestamps are taken when the bytes
    arrive, not when a busy client on the same CPU lets it run (it only forwards)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (OSError, AttributeError):
        return "SCHED_OTHER"
    return "SCHED_FIFO 1"


async def proxy_serve(upstream_host: str, upstream_port: int, out: Path,
                      server_pid: int) -> None:
    proxy = _Proxy((upstream_host, upstream_port), server_pid)
    server = await asyncio.start_server(proxy.handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    dumps = 0

    def dump() -> None:
        nonlocal dumps
        dumps += 1
        proxy.dump(out.with_name(f"{out.stem}-{dumps}.json"))

    loop.add_signal_handler(signal.SIGUSR1, dump)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"PORT {port} {realtime()}", flush=True)
    async with server:
        await stop.wait()


def proxy_main(argv: list[str]) -> int:
    host, port, out, server_pid = argv
    asyncio.run(proxy_serve(host, int(port), Path(out), int(server_pid)))
    return 0


class WireProxy:
    """The proxy in its own process (started from this one: on CPU 1 under `--pin`). `take()`
    has it write the requests it saw since the last take, and reads them."""

    def __init__(self, upstream: str, server_pid: int, work: Path, name: str) -> None:
        host, _, port = upstream.removeprefix("http://").rpartition(":")
        self.out = work / f"proxy-{name}.json"
        self.dumps = 0
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), PROXY_FLAG, host, port,
             str(self.out), str(server_pid)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if len(line) < 2 or line[0] != "PORT":
            self.process.kill()
            raise SystemExit(f"the proxy did not start (it said {line!r})")
        self.base = f"http://{HOST}:{line[1]}"
        self.scheduler = " ".join(line[2:])

    def take(self) -> dict[str, Any]:
        self.dumps += 1
        path = self.out.with_name(f"{self.out.stem}-{self.dumps}.json")
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while not path.is_file():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("the proxy did not write its records")
            time.sleep(0.01)
        document: dict[str, Any] = json.loads(path.read_text())
        path.unlink()
        return document

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wire_figures(proxy: dict[str, Any], own: dict[str, tuple[float, float]]
                 ) -> dict[str, Any]:
    """The proxy's view of one tool's run, matched request by request by prompt text with
    the tool's own per-request figures `own` (prompt -> TTFT, mean gap; the requests the tool
    measured): TTFT and ITL p50 on the wire over the same requests, the tool's offsets."""
    posts = [r for r in proxy["records"] if r.get("method") == "POST"]
    by_prompt = {r.get("prompt"): r for r in posts}
    texts = list(own)
    wire: list[dict[str, Any]] = []
    for text in texts:
        record = by_prompt.get(text)
        if record is None or len(record["tokens_s"]) < 2 or "end_s" not in record:
            raise SystemExit("proxy: a measured prompt is missing from its records (or has "
                             "fewer than two tokens, or no end)")
        wire.append(record)
    ttft = [r["tokens_s"][0] - r["first_byte_s"] for r in wire]
    gaps = [[b - a for a, b in itertools.pairwise(r["tokens_s"])] for r in wire]
    means = [statistics.fmean(g) for g in gaps]
    ttft_offsets = sorted(own[t][0] - w for t, w in zip(texts, ttft, strict=True))
    itl_offsets = sorted(own[t][1] - m for t, m in zip(texts, means, strict=True))
    pooled = sorted(g for request in gaps for g in request)
    first = posts.index(wire[0])
    server_cpu = (wire[-1]["server_cpu_at_end_s"] - posts[first - 1]["server_cpu_at_end_s"]
                  if first > 0 else float("nan"))
    return {
        "ttft_p50_s": percentile(sorted(ttft), 50),
        "itl_p50_pooled_s": percentile(pooled, 50),
        "itl_p50_per_request_s": percentile(sorted(means), 50),
        "itl_mean_s": statistics.fmean(pooled),
        "ttft_offset_p50_s": percentile(ttft_offsets, 50),
        "ttft_offset_min_max_s": [ttft_offsets[0], ttft_offsets[-1]],
        "itl_offset_p50_s": percentile(itl_offsets, 50),
        "matched": len(texts), "posts_seen": len(posts),
        "connections": proxy["connections"],
        # How long the server sat idle before each request (the previous response's end
        # on the wire to this request's first byte): the pacing each tool gives it.
        "idle_before_p50_s": percentile(sorted(
            r["first_byte_s"] - posts[posts.index(r) - 1]["end_s"] for r in wire
            if posts.index(r) > 0 and "end_s" in posts[posts.index(r) - 1]), 50),
        "request_head_to_body_end_p50_s": percentile(
            sorted(r["request_end_s"] - r["first_byte_s"] for r in wire), 50),
        "server_cpu_measured_requests_s": server_cpu,
        "proxy_cpu_s": proxy["proxy_cpu_s"],
        "request_body_bytes": sorted({r["body_bytes"] for r in wire}),
        "request_body_fields": wire[0].get("body_fields"),  # all but the prompt
        "errors": proxy["errors"],
    }


def idle_gaps(proxy: dict[str, Any]) -> dict[str, float]:
    """prompt -> how long the server sat idle before that request on the wire: its first
    byte - the end of the POST before it (the one whose first byte came last before it, on
    any connection), clamped at 0. The first POST of a dump has none: left out (0 when our
    client replays it: it is a warm-up request)."""
    posts = sorted((r for r in proxy["records"] if r.get("method") == "POST"),
                   key=lambda r: r["first_byte_s"])
    return {r["prompt"]: max(0.0, r["first_byte_s"] - before["end_s"])
            for before, r in itertools.pairwise(posts)
            if "end_s" in before and isinstance(r.get("prompt"), str)}


class Bench:
    """The settings of a comparison and the rounds against one server."""

    def __init__(self, args: argparse.Namespace, command: list[str], work: Path,
                 say: Callable[[str], None]) -> None:
        self.args = args
        self.command = command
        self.work = work
        self.say = say
        count = args.requests + args.warmup
        stream = synthetic(Lengths(mean=args.input_tokens),
                           Lengths(mean=args.output_tokens), args.seed)
        self.prompts = [next(stream) for _ in range(count)]
        self.measured = [p.text for p in self.prompts[args.warmup:]]
        self.prompts_file = work / "prompts.jsonl"
        self.prompts_file.write_text("".join(json.dumps({"prompt": p.text}) + "\n"
                                             for p in self.prompts))
        # prompt -> idle before it on the wire, in the last run through the proxy
        self.last_idle: dict[str, float] = {}
        # Our client's own turnaround on the wire (the idle before a request when it sends
        # back to back: p50 of the last such run through the proxy), taken off each gap it
        # replays so that the server's idle time is guidellm's, not guidellm's + ours.
        self.turnaround_s = 0.0

    def calibrate(self, proxy: dict[str, Any]) -> None:
        gaps = sorted(idle_gaps(proxy).values())
        if gaps:
            self.turnaround_s = percentile(gaps, 50)

    def one(self, tool: str, base: str, model: str, label: str, server_pid: int, *,
            proxy: WireProxy | None = None) -> dict[str, Any]:
        args = self.args
        server_cpu = tree_cpu_s(server_pid)
        own_cpu, child_cpu = time.process_time(), children_cpu_s()
        started = time.perf_counter()
        if tool == "ours":
            figures = run_ours(base, model, self.prompts, warmup=args.warmup,
                               requests=args.requests, concurrency=args.concurrency)
        elif tool == "ours_like":  # paced by the idle gaps of the guidellm run just before
            figures = run_ours_like(base, model, self.prompts, warmup=args.warmup,
                                    requests=args.requests,
                                    idle_before={text: max(0.0, gap - self.turnaround_s)
                                                 for text, gap in self.last_idle.items()})
            figures["turnaround_taken_off_s"] = self.turnaround_s
        else:
            figures = run_reference(self.command, base, model, self.prompts_file,
                                    self.work / f"guidellm-{label}.json",
                                    warmup=args.warmup, requests=args.requests,
                                    concurrency=args.concurrency,
                                    output_tokens=args.output_tokens)
        figures["wall_s"] = time.perf_counter() - started
        # The client's CPU: ours in this process; guidellm's process tree (its start-up, the
        # imports of torch and transformers, and its worker processes included: every
        # descendant is reaped by the time it exits) from RUSAGE_CHILDREN. The proxy, a
        # child too, is reaped only at the end, so it is not in this figure.
        figures["client_cpu_s"] = (children_cpu_s() - child_cpu if tool == "reference"
                                   else time.process_time() - own_cpu)
        figures["server_cpu_s"] = tree_cpu_s(server_pid) - server_cpu
        own = figures.pop("per_request")
        if proxy is not None:
            document = proxy.take()
            figures["wire"] = wire_figures(document, own)
            self.last_idle = idle_gaps(document)
            if tool == "ours":
                self.calibrate(document)
        return figures

    def rounds(self, base: str, model: str, server_pid: int, name: str,
               proxy: WireProxy | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        target = proxy.base if proxy is not None else base
        like = bool(self.args.like_reference) and proxy is not None
        for index in range(self.args.rounds):
            order = ["ours", "reference"] if index % 2 == 0 else ["reference", "ours"]
            if like:  # right after guidellm's run: it replays that run's idle gaps
                order.insert(order.index("reference") + 1, "ours_like")
            row: dict[str, Any] = {"round": index + 1, "order": order}
            idle: dict[str, dict[str, float]] = {}  # tool -> its requests' idle gaps
            for tool in order:
                row[tool] = self.one(tool, target, model, f"{name}-{index + 1}", server_pid,
                                     proxy=proxy)
                idle[tool] = self.last_idle
            same = row["reference"].pop("measured_prompts") == self.measured
            if self.args.concurrency is None:  # in order only when one at a time
                row["same_prompts_measured"] = same
            row["ratios"] = {key: row["ours"][a] / row["reference"][b]
                             for key, (a, b) in RATIOS.items()}
            if like:
                row["like_ratios"] = {key: row["ours_like"][a] / row["reference"][b]
                                      for key, (a, b) in RATIOS.items()}
                row["pacing"] = pacing(idle["reference"], idle["ours_like"], self.measured)
            if proxy is not None:
                # Our client once more, straight to the server: what the proxy adds.
                direct = self.one("ours", base, model, f"{name}-{index + 1}", server_pid)
                row["ours_direct"] = direct
                row["wire"] = {
                    "ttft_ours_over_reference": row["ours"]["wire"]["ttft_p50_s"]
                    / row["reference"]["wire"]["ttft_p50_s"],
                    "itl_ours_over_reference": row["ours"]["wire"]["itl_p50_pooled_s"]
                    / row["reference"]["wire"]["itl_p50_pooled_s"],
                    "proxy_added_ttft_s": row["ours"]["ttft_p50_s"] - direct["ttft_p50_s"],
                }
                if like:
                    row["wire"].update({f"{key}_like_over_reference":
                                        row["ours_like"]["wire"][key]
                                        / row["reference"]["wire"][key]
                                        for key in WIRE_LIKE_KEYS})
            rows.append(row)
            show_round(row, self.say)
        return rows


WIRE_LIKE_KEYS = ("ttft_p50_s", "itl_p50_pooled_s", "itl_p50_per_request_s")


def pacing(reference: dict[str, float], like: dict[str, float],
           measured: list[str]) -> dict[str, Any]:
    """How well our replay kept guidellm's idle gaps, on the wire, over the measured
    requests: the gaps' p50 in each run and the per-request difference (ours - its)."""
    texts = [t for t in measured if t in reference and t in like]
    if not texts:
        return {"matched": 0}
    diff = sorted(like[t] - reference[t] for t in texts)
    return {"matched": len(texts),
            "reference_idle_p50_s": percentile(sorted(reference[t] for t in texts), 50),
            "reference_idle_min_max_s": [min(reference[t] for t in texts),
                                         max(reference[t] for t in texts)],
            "like_idle_p50_s": percentile(sorted(like[t] for t in texts), 50),
            "difference_p50_s": percentile(diff, 50),
            "difference_min_max_s": [diff[0], diff[-1]]}


def summarise_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(tool: str, key: str) -> float:
        return statistics.median(float(r[tool][key]) for r in rows)

    like = "ours_like" in rows[0]
    tools = ("ours", "reference", "ours_like") if like else ("ours", "reference")
    summary: dict[str, Any] = {
        "ratio_spread": {key: spread([r["ratios"][key] for r in rows]) for key in RATIOS},
        "medians_of_rounds": {f"{tool}_{key}": med(tool, key)
                              for tool in tools
                              for key in ("ttft_p50_s", "itl_p50_s", "itl_mean_s")},
        "cpu_s": {f"{tool}_{key}": spread([r[tool][key] for r in rows])
                  for tool in tools
                  for key in ("client_cpu_s", "server_cpu_s", "wall_s")},
    }
    if like:  # our client asking for guidellm's work, paced by its gaps / guidellm
        summary["like_ratio_spread"] = {key: spread([r["like_ratios"][key] for r in rows])
                                        for key in RATIOS}
        summary["pacing"] = {key: spread([r["pacing"][key] for r in rows])
                             for key in ("reference_idle_p50_s", "like_idle_p50_s",
                                         "difference_p50_s")}
    if "wire" in rows[0]:
        wire: dict[str, Any] = {}
        for tool in tools:
            for key in ("ttft_p50_s", "itl_p50_pooled_s", "itl_p50_per_request_s",
                        "ttft_offset_p50_s", "itl_offset_p50_s",
                        "server_cpu_measured_requests_s", "proxy_cpu_s"):
                wire[f"{tool}_{key}"] = spread([r[tool]["wire"][key] for r in rows])
            wire[f"{tool}_ttft_offset_over_wire"] = spread(
                [r[tool]["wire"]["ttft_offset_p50_s"] / r[tool]["wire"]["ttft_p50_s"]
                 for r in rows])
        for key in ("ttft_ours_over_reference", "itl_ours_over_reference",
                    "proxy_added_ttft_s",
                    *(f"{k}_like_over_reference" for k in WIRE_LIKE_KEYS if like)):
            wire[key] = spread([r["wire"][key] for r in rows])
        wire["ours_direct_ttft_p50_s"] = spread([r["ours_direct"]["ttft_p50_s"] for r in rows])
        summary["wire"] = wire
    return summary


@contextlib.contextmanager
def proxied(args: argparse.Namespace, base: str, server_pid: int, bench: Bench,
            name: str) -> Iterator[WireProxy | None]:
    if not args.proxy:
        yield None
        return
    proxy = WireProxy(base, server_pid, bench.work, name)
    bench.say(f"proxy at {proxy.base} -> {base} ({proxy.scheduler}"
              + (", CPU 1)" if args.pin else ")"))
    try:
        yield proxy
    finally:
        proxy.close()


def serve_transformers(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    model_dir = bench.work / "model"
    build_model(model_dir)
    model = str(model_dir)
    port = free_port(HOST)
    base = f"http://{HOST}:{port}"
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", model,
               "--host", HOST, "--port", str(port), "--device", "cpu",
               "--continuous-batching", "--cb-block-size", "32", "--cb-num-blocks", "256"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.server_threads), "HF_HUB_OFFLINE": "1"}
    with ServerProcess(command, log_path=bench.work / "server.log", env=env) as server:
        try:
            ready = server.wait_ready(base + "/health", 300)
        except ServerUnavailable as exc:
            raise SystemExit(f"transformers serve did not start: {exc}\n"
                             f"{server.log_tail()}") from None
        if args.pin:
            pin_server(server.pid, 0)
            os.sched_setaffinity(0, {1})  # this process, and guidellm started from it
        bench.say(f"transformers serve ready in {ready:.1f} s at {base}"
                  + ("; server on CPU 0, clients on CPU 1" if args.pin else ""))
        with proxied(args, base, server.pid, bench, "serve") as proxy:
            # The server's first requests are cold: discarded (through the proxy, if any).
            run_ours(proxy.base if proxy else base, model, bench.prompts, warmup=0,
                     requests=PRIME_REQUESTS, concurrency=None)
            if proxy is not None:
                bench.calibrate(proxy.take())
            rows = bench.rounds(base, model, server.pid, "serve", proxy)
        alive = server.alive()
    if args.pin:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return {"server": "transformers serve", "rounds": rows, "server_alive_at_end": alive,
            **summarise_rows(rows)}


def fault_control(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """The same rounds against our fault server, whose TTFT and gaps are known sleeps and
    which needs almost no CPU: the tools' figures against a known truth."""
    from tests.openai_fault_server import FaultServer

    model = str(bench.work / "model")  # its tokenizer, for guidellm; the server ignores it
    knobs = {"ttft_s": args.control_ttft_ms / 1e3,
             "token_delay_s": args.control_itl_ms / 1e3, "tokens": args.output_tokens}
    with FaultServer(**knobs) as server:
        assert server._process is not None
        bench.say(f"control: fault server, TTFT {args.control_ttft_ms} ms (sleep), "
                  f"{args.control_itl_ms} ms between tokens (sleep)")
        with proxied(args, server.base_url, server._process.pid, bench,
                     "control") as proxy:
            if proxy is not None:
                run_ours(proxy.base, model, bench.prompts, warmup=0,
                         requests=PRIME_REQUESTS, concurrency=None)
                bench.calibrate(proxy.take())
            rows = bench.rounds(server.base_url, model, server._process.pid, "control",
                                proxy)
    return {"server": "fault server (known sleeps)", "knobs": knobs, "rounds": rows,
            **summarise_rows(rows)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", "--reference-python", required=True,
                        help="the Python of guidellm's virtualenv, or its guidellm executable")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--input-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=None,
                        help="requests in flight (closed loop); default synchronous")
    parser.add_argument("--server-threads", type=int, default=1)
    parser.add_argument("--pin", action="store_true",
                        help="server on CPU 0, both clients on CPU 1")
    parser.add_argument("--control", action="store_true",
                        help="also the same rounds against the fault server (known delays)")
    parser.add_argument("--control-ttft-ms", type=float, default=10.0)
    parser.add_argument("--control-itl-ms", type=float, default=3.0)
    parser.add_argument("--proxy", action="store_true",
                        help="both tools through a TCP proxy of ours that times every "
                             "request on the wire")
    parser.add_argument("--like-reference", action="store_true",
                        help="after each guidellm run, our client again sending guidellm's "
                             "requests: its body fields and its idle gaps before each "
                             "request (measured on the wire; needs --proxy)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1 or args.warmup < 1:
        parser.error("--requests, --rounds and --warmup must be >= 1")
    if args.like_reference and not args.proxy:
        parser.error("--like-reference needs --proxy: guidellm's idle gaps before each "
                     "request are measured on the wire by the proxy")
    if args.like_reference and args.concurrency is not None:
        parser.error("--like-reference replays a synchronous run's gaps: leave out "
                     "--concurrency")
    if args.pin and (os.cpu_count() or 1) < 2:
        parser.error("--pin needs two CPUs")
    command = reference_command(args.reference)
    say: Callable[[str], None] = (lambda text: print(text, file=sys.stderr)) \
        if args.json else print
    load_start = loadavg()
    say(f"load average at start {load_start}")
    with tempfile.TemporaryDirectory(prefix="serving-vs-reference-") as tmp:
        bench = Bench(args, command, Path(tmp), say)
        parts = {"serve": serve_transformers(bench, args)}
        if args.control:
            parts["control"] = fault_control(bench, args)
    result = {
        "reference": "guidellm", "reference_command": command,
        "workload": {"requests": args.requests, "warmup": args.warmup,
                     "input_tokens": args.input_tokens, "output_tokens": args.output_tokens,
                     "profile": profile_for(args.concurrency).text,
                     "endpoint": "/v1/completions (stream)", "seed": args.seed,
                     "server_threads": args.server_threads, "pinned": args.pin,
                     "proxy": args.proxy, "like_reference": args.like_reference},
        **parts, "loadavg_start": load_start, "loadavg_end": loadavg()}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for name, part in parts.items():
        print_part(name, part, args.rounds)
    print(f"load average (1/5/15 min): start {load_start}, end {result['loadavg_end']}")
    return 0


def print_part(name: str, part: dict[str, Any], rounds: int) -> None:
    """One server's summary as text."""
    print()
    print(f"{name} ({part['server']}): ratio ours/guidellm over {rounds} rounds "
          f"(median [min, max]); goal within {GOAL:.0%}:")
    for key, s in part["ratio_spread"].items():
        verdict = "within" if abs(s["median"] - 1) <= GOAL else "NOT within"
        print(f"  {key:<22} {s['median']:.3f} [{s['min']:.3f}, {s['max']:.3f}]  "
              f"{verdict} {GOAL:.0%}")
    m = part["medians_of_rounds"]
    print(f"  medians of the rounds' figures (ms): TTFT p50 ours "
          f"{m['ours_ttft_p50_s'] * 1e3:.3f} / guidellm "
          f"{m['reference_ttft_p50_s'] * 1e3:.3f}; ITL p50 ours "
          f"{m['ours_itl_p50_s'] * 1e3:.3f} / guidellm {m['reference_itl_p50_s'] * 1e3:.3f}"
          f"; ITL mean ours {m['ours_itl_mean_s'] * 1e3:.3f} / guidellm "
          f"{m['reference_itl_mean_s'] * 1e3:.3f}")
    for key, s in part.get("like_ratio_spread", {}).items():
        verdict = "within" if abs(s["median"] - 1) <= GOAL else "NOT within"
        print(f"  like-reference {key:<22} {s['median']:.3f} [{s['min']:.3f}, "
              f"{s['max']:.3f}]  {verdict} {GOAL:.0%}")
    for key, s in part.get("pacing", {}).items():
        print(f"  like-reference pacing {key:<24} {s['median'] * 1e3:.3f} "
              f"[{s['min'] * 1e3:.3f}, {s['max'] * 1e3:.3f}] ms")
    for key, c in part["cpu_s"].items():
        print(f"  {key:<28} {c['median']:.2f} [{c['min']:.2f}, {c['max']:.2f}] s")
    for key, w in part.get("wire", {}).items():
        scale = 1.0 if "over" in key else 1e3
        unit = "" if "over" in key else " ms"
        print(f"  wire {key:<40} {w['median'] * scale:.3f} [{w['min'] * scale:.3f}, "
              f"{w['max'] * scale:.3f}]{unit}")


def show_round(row: dict[str, Any], say: Callable[[str], None]) -> None:
    ours, ref, ratio = row["ours"], row["reference"], row["ratios"]
    like = row.get("ours_like")
    extra = f"{'like':>10}{'like/gl':>8}" if like else ""
    say(f"round {row['round']} ({' then '.join(row['order'])})")
    say(f"  {'figure':<34}{'ours':>10}{'guidellm':>10}{'ratio':>8}{extra}")
    lines = (("TTFT p50 (ms)", "ttft_p50_s", "ttft_p50_s", "ttft_p50"),
             ("ITL p50 (ms) [pooled gaps | req]", "itl_p50_s", "itl_p50_s", "itl_p50"),
             ("TPOT p50 ours | ITL p50 guidellm", "tpot_p50_s", "itl_p50_s",
              "tpot_p50_vs_itl_p50"),
             ("ITL mean (ms)", "itl_mean_s", "itl_mean_s", "itl_mean"))
    for label, a, b, r in lines:
        say(f"  {label:<34}{ours[a] * 1e3:>10.3f}{ref[b] * 1e3:>10.3f}{ratio[r]:>8.3f}"
            + (f"{like[a] * 1e3:>10.3f}{row['like_ratios'][r]:>8.3f}" if like else ""))
    say(f"  {'wall / client CPU / server CPU (s)':<34}"
        f"{ours['wall_s']:>4.1f}/{ours['client_cpu_s']:.1f}/{ours['server_cpu_s']:.1f}  "
        f"{ref['wall_s']:>4.1f}/{ref['client_cpu_s']:.1f}/{ref['server_cpu_s']:.1f}"
        + (f"  {like['wall_s']:>4.1f}/{like['client_cpu_s']:.1f}/"
           f"{like['server_cpu_s']:.1f}" if like else ""))
    if "wire" in row:
        ow, rw = ours["wire"], ref["wire"]
        lw = like["wire"] if like else None
        say(f"  {'on the wire (proxy), ms':<34}{'ours':>10}{'guidellm':>10}{'ratio':>8}"
            f"{extra}")
        for label, key in (("wire TTFT p50", "ttft_p50_s"),
                           ("wire ITL p50 pooled gaps", "itl_p50_pooled_s"),
                           ("wire ITL p50 per-request means", "itl_p50_per_request_s"),
                           ("tool - wire TTFT, p50 over req", "ttft_offset_p50_s"),
                           ("tool - wire ITL (req mean), p50", "itl_offset_p50_s"),
                           ("idle before a request, p50", "idle_before_p50_s")):
            a, b = ow[key], rw[key]
            text = f"  {label:<34}{a * 1e3:>10.3f}{b * 1e3:>10.3f}" + (
                f"{a / b:>8.3f}" if b else f"{'':>8}")
            if lw is not None:
                c = lw[key]
                text += f"{c * 1e3:>10.3f}" + (f"{c / b:>8.3f}" if b else "")
            say(text)
        say(f"  {'server CPU measured reqs / proxy CPU':<34}"
            f"{ow['server_cpu_measured_requests_s']:>5.2f}/{ow['proxy_cpu_s']:.2f}  "
            f"{rw['server_cpu_measured_requests_s']:>5.2f}/{rw['proxy_cpu_s']:.2f}"
            + (f"  {lw['server_cpu_measured_requests_s']:>5.2f}/{lw['proxy_cpu_s']:.2f}"
               if lw is not None else ""))
        say(f"  connections ours {ow['connections']}, guidellm {rw['connections']}"
            + (f", like {lw['connections']}" if lw is not None else "")
            + f"; ours direct TTFT p50 {row['ours_direct']['ttft_p50_s'] * 1e3:.3f} ms "
            f"(proxy adds {row['wire']['proxy_added_ttft_s'] * 1e3:.3f} ms)")
        if lw is not None:
            pace = row["pacing"]
            if pace["matched"]:
                say(f"  like pacing: guidellm's idle gaps p50 "
                    f"{pace['reference_idle_p50_s'] * 1e3:.2f} ms [min "
                    f"{pace['reference_idle_min_max_s'][0] * 1e3:.2f}, max "
                    f"{pace['reference_idle_min_max_s'][1] * 1e3:.2f}], ours-like's - "
                    f"guidellm's per request p50 {pace['difference_p50_s'] * 1e3:+.3f} ms "
                    f"[{pace['difference_min_max_s'][0] * 1e3:+.3f}, "
                    f"{pace['difference_min_max_s'][1] * 1e3:+.3f}]")
            if lw["request_body_fields"] != rw["request_body_fields"]:
                say(f"  note: body fields differ: like {lw['request_body_fields']}, "
                    f"guidellm {rw['request_body_fields']}")
        for errors in (ow["errors"], rw["errors"], lw["errors"] if lw is not None else []):
            if errors:
                say(f"  proxy parse errors: {errors[:3]}")
    if ours["output_tokens"] != ref["output_tokens"]:
        say(f"  note: output tokens ours {ours['output_tokens']}, guidellm "
            f"{ref['output_tokens']}")
    if ref["requests"] != ours["requests"]:
        say(f"  note: guidellm measured {ref['requests']} requests, ours {ours['requests']}")
    elif row.get("same_prompts_measured") is False:
        say("  note: guidellm measured other prompts than ours (its warm-up boundary moved)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == PROXY_FLAG:
        raise SystemExit(proxy_main(sys.argv[2:]))
    raise SystemExit(main())
