"""How accurately the load generator offers an open-loop load, and what it costs per request.

Against the fault server (tests/openai_fault_server.py, its own process) in instant mode
(each answer in one write, no delays: the server is never the bottleneck), for target rates
1 .. 200 requests/s, constant and poisson, one run each of about `--seconds` (at least 8
requests), no warm-up beyond 2 requests:

- achieved/target: for constant, the sends' rate / the target; for poisson, the sends' rate
  / the seeded schedule's own rate (a Poisson sample's rate differs from its target by
  chance, which is not the client's doing) and, beside it, the raw sends' rate / target;
- send lag p50 / p99: sent - due;
- client overhead per request (mean, p99): our code's CPU time per request
  (RequestRecord.client_overhead_s, see collector/adapters/load/client.py), and the whole
  process's CPU time per request (aiohttp and the event loop included);
- the highest rate held within 2% (every rate up to it, both profiles, sends/schedule within
  2%, no failed request); the rows whose p99 send lag is over loadgen.SEND_LAG_LIMIT_S are
  marked.

`--compare-httpx` also measures the whole process's CPU per request of a closed loop of 8
streaming requests with aiohttp and with httpx2's AsyncClient against the same server.

    .venv/bin/python benchmarks/loadgen_accuracy.py [--seconds 3] [--compare-httpx] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests/ is not installed
    sys.path.insert(0, str(ROOT))

from collector.adapters.load.client import Target, open_session  # noqa: E402
from collector.adapters.load.loadgen import SEND_LAG_LIMIT_S, run_load  # noqa: E402
from collector.adapters.load.prompts import Prompt, synthetic  # noqa: E402
from collector.domain.serving import (  # noqa: E402
    Endpoint,
    Lengths,
    LoadProfile,
    ProfileKind,
    Serving,
)
from collector.domain.stats import mean, percentile  # noqa: E402
from tests.openai_fault_server import FaultServer  # noqa: E402

RATES = (1, 2, 5, 10, 20, 50, 100, 200)
HELD = 0.02


def measure(server: FaultServer, kind: ProfileKind, rate: float, seconds: float
            ) -> dict[str, Any]:
    requests = max(8, round(rate * seconds))
    serving = Serving(endpoint=Endpoint(url=server.base_url), requests=requests,
                      profile=LoadProfile(kind=kind, rate=rate), warmup_requests=2,
                      input_tokens=Lengths(mean=32), output_tokens=Lengths(mean=8),
                      request_timeout_s=10)
    run = run_load(Target(server.base_url, "fault"), serving, check_client=False)
    records = run.records
    sends = sorted(r.sent_s for r in records)
    raw = (len(sends) - 1) / (sends[-1] - sends[0]) / rate if len(sends) > 1 else None
    overhead = sorted(r.client_overhead_s for r in records)
    check = run.check
    return {"profile": kind.value, "rate": rate, "requests": len(records),
            "errors": sum(r.outcome != "ok" for r in records),
            "achieved_ratio": check.achieved_ratio, "raw_ratio": raw,
            "lag_p50_ms": (check.send_lag_p50_s or 0) * 1e3,
            "lag_p99_ms": (check.send_lag_p99_s or 0) * 1e3,
            "overhead_mean_us": mean(overhead) * 1e6,
            "overhead_p99_us": percentile(overhead, 99) * 1e6,
            "process_cpu_per_request_us": check.cpu_s / len(records) * 1e6,
            "cpu_ratio": check.cpu_ratio,
            "loop_lag_p99_ms": (check.loop_lag_p99_s or 0) * 1e3,
            "client_bound": check.client_bound}


def held(rows: list[dict[str, Any]]) -> float:
    best = 0.0
    for rate in RATES:
        mine = [r for r in rows if r["rate"] == rate]
        if not mine or not all(
                r["achieved_ratio"] is not None and abs(r["achieved_ratio"] - 1) <= HELD
                and r["errors"] == 0 for r in mine):
            break
        best = rate
    return best


async def _closed(client: str, base: str, total: int, concurrency: int) -> float:
    """Process CPU seconds per request of `total` streaming requests, `concurrency` in
    flight, read chunk by chunk."""
    prompts = synthetic(Lengths(mean=32), Lengths(mean=8), 0)
    body = {"model": "fault", "max_tokens": 8, "stream": True,
            "stream_options": {"include_usage": True}}
    url = base + "/v1/completions"
    left = total

    if client == "aiohttp":
        async with open_session() as session:
            async def one_aiohttp() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    prompt: Prompt = next(prompts)
                    async with session.post(url, json={**body, "prompt": prompt.text}) as r:
                        async for _ in r.content.iter_any():
                            pass
            start = time.process_time()
            await asyncio.gather(*(one_aiohttp() for _ in range(concurrency)))
            return (time.process_time() - start) / total
    import httpx2  # only for this comparison
    async with httpx2.AsyncClient(timeout=10) as http:
        async def one_httpx() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                prompt = next(prompts)
                async with http.stream("POST", url, json={**body, "prompt": prompt.text}) as r:
                    async for _ in r.aiter_bytes():
                        pass
        start = time.process_time()
        await asyncio.gather(*(one_httpx() for _ in range(concurrency)))
        return (time.process_time() - start) / total


def compare_clients(server: FaultServer, total: int = 2000) -> dict[str, float]:
    figures: dict[str, float] = {}
    for client in ("aiohttp", "httpx2", "aiohttp", "httpx2"):  # interleaved, best of two
        per = asyncio.run(_closed(client, server.base_url, total, 8))
        figures[client] = min(figures.get(client, per), per)
    return {k: v * 1e6 for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--compare-httpx", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with FaultServer(instant=True, tokens=8) as server:
        for rate in RATES:
            for kind in (ProfileKind.CONSTANT, ProfileKind.POISSON):
                rows.append(measure(server, kind, rate, args.seconds))
        clients = compare_clients(server) if args.compare_httpx else None
    report = {"rows": rows, "held_within_2pct_per_s": held(rows), "clients_cpu_us": clients,
              "loadavg": [round(x, 2) for x in os.getloadavg()]}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'profile':9} {'rate/s':>6} {'n':>4} {'err':>3} {'sent/sched':>10} "
          f"{'sent/target':>11} {'lag p50 ms':>10} {'lag p99 ms':>10} {'ovh mean us':>11} "
          f"{'ovh p99 us':>10} {'cpu/req us':>10} {'cpu':>5} {'loop p99 ms':>11}")
    for r in rows:
        ratio, raw = r["achieved_ratio"], r["raw_ratio"]
        print(f"{r['profile']:9} {r['rate']:>6g} {r['requests']:>4} {r['errors']:>3} "
              f"{'-' if ratio is None else f'{ratio:.4f}':>10} "
              f"{'-' if raw is None else f'{raw:.4f}':>11} "
              f"{r['lag_p50_ms']:>10.3f} {r['lag_p99_ms']:>10.3f} "
              f"{r['overhead_mean_us']:>11.1f} {r['overhead_p99_us']:>10.1f} "
              f"{r['process_cpu_per_request_us']:>10.0f} {r['cpu_ratio']:>5.0%} "
              f"{r['loop_lag_p99_ms']:>11.3f}"
              f"{' *' if r['lag_p99_ms'] > SEND_LAG_LIMIT_S * 1e3 else ''}")
    print(f"highest rate held within 2% (both profiles): "
          f"{report['held_within_2pct_per_s']:g}/s; '*': p99 send lag over "
          f"{SEND_LAG_LIMIT_S * 1e3:g} ms")
    if clients:
        print("process CPU per streaming request, closed loop of 8: "
              + ", ".join(f"{k} {v:.0f} us" for k, v in clients.items()))
    print(f"load average: {report['loadavg']}")


if __name__ == "__main__":
    main()
