"""A small OpenAI-compatible streaming server of our own that misbehaves on demand.

It runs in its own process (`python -m tests.openai_fault_server`, on 127.0.0.1, port 0:
the kernel chooses; it prints `PORT <n>`), so the load generator's CPU figures in a test are
the client's alone and "kill the process" is a real death. `FaultServer` starts it, sets its
knobs at runtime (POST /_knobs) and reads its counters (GET /_stats).

Endpoints: POST /v1/completions and /v1/chat/completions (streaming SSE as vLLM sends it:
one chunk per token, a finish_reason, a usage chunk, `data: [DONE]`; non-streaming
requests get one JSON answer), GET /health, GET /version (the `version` knob).

Knobs (`Knobs`): ttft_s (delay before the first token), token_delay_s (between tokens: the
delay knob for injected slowdowns), tokens (per request, capped by max_tokens), error_status
for every `error_every`-th request, stall_after (stop sending after k tokens, connection
held open), die_after with die_mode "close" (abort the connection) or "exit" (kill the
process), garbage "json" (a malformed event), "sse" (bytes that are no SSE line) or "http"
(no HTTP response at all) after `garbage_after` tokens, never_ready (/health answers 503),
instant (the whole answer in one write, no delays: for load-generator accuracy), slots (how
many requests are generated at once, the others queue: a server with a capacity), usage and
finish (leave out the usage chunk, or the finish_reason and [DONE]), api_key (require
`Authorization: Bearer <key>`, else 401), version (GET /version answers `{"version": ...}`,
as vLLM's does, so the collector records it as the server's version; None: 404, as before),
work_module (a module whose `work()` runs, in a thread, before every token but the first, after
token_delay_s: with the toy package `slowpoke` (tests/toy_packages.py) the server is as fast as
the slowpoke of the interpreter it runs in, a package environment's under `collector ab`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import select
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Knobs:
    ttft_s: float = 0.0
    token_delay_s: float = 0.0
    tokens: int = 8
    error_status: int | None = None
    error_every: int = 1
    stall_after: int | None = None
    die_after: int | None = None
    die_mode: str = "close"
    garbage: str | None = None
    garbage_after: int = 1
    never_ready: bool = False
    instant: bool = False
    usage: bool = True
    finish: bool = True
    api_key: str | None = None
    slots: int | None = None  # requests generated at once; the others wait (a queue)
    version: str | None = None  # what GET /version reports (None: no such route, 404)
    work_module: str | None = None  # its work() runs between tokens (imported at start)


def knobs_from(values: dict[str, Any], base: Knobs | None = None) -> Knobs:
    names = {f.name for f in dataclasses.fields(Knobs)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown knob(s): {', '.join(unknown)}")
    return dataclasses.replace(base or Knobs(), **values)


# -- the server (in its own process) ------------------------------------------------------


class _State:
    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.health_checks = 0
        self.authorization_seen: list[str] = []
        self.generation = 0
        self.slots: asyncio.Semaphore | None = None
        self.slots_size: int | None = None

    def slot(self) -> asyncio.Semaphore | None:
        if self.knobs.slots != self.slots_size:
            self.slots_size = self.knobs.slots
            self.slots = None if self.slots_size is None else asyncio.Semaphore(self.slots_size)
        return self.slots


STATE = web.AppKey("state", _State)


def _chunk(chat: bool, model: str, text: str | None, finish: str | None) -> bytes:
    if chat:
        delta = {} if text is None else {"content": text}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish}
        kind = "text_completion"
    document = {"id": "cmpl-fault", "object": kind, "created": 0, "model": model,
                "choices": [choice]}
    return b"data: " + json.dumps(document).encode() + b"\n\n"


def _usage(model: str, prompt_tokens: int, completion_tokens: int) -> bytes:
    document = {"id": "cmpl-fault", "object": "text_completion", "created": 0,
                "model": model, "choices": [],
                "usage": {"prompt_tokens": prompt_tokens,
                          "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}
    return b"data: " + json.dumps(document).encode() + b"\n\n"


async def _health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.health_checks += 1
    if state.knobs.never_ready:
        return web.Response(status=503, text="not ready")
    return web.Response(text="ok")


async def _version(request: web.Request) -> web.Response:
    version = request.app[STATE].knobs.version
    if version is None:
        raise web.HTTPNotFound
    return web.json_response({"version": version})


async def _set_knobs(request: web.Request) -> web.Response:
    state = request.app[STATE]
    document = await request.json()
    try:
        reset = document.pop("_reset", False)
        base = Knobs() if reset else state.knobs
        if reset:  # the counters too
            state.requests = state.max_in_flight = state.in_flight = 0
            state.generation += 1  # requests of before the reset no longer count
            state.authorization_seen.clear()
        state.knobs = knobs_from(document, base)
    except (TypeError, ValueError) as error:
        return web.Response(status=400, text=str(error))
    return web.json_response(dataclasses.asdict(state.knobs))


async def _stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"requests": state.requests, "in_flight": state.in_flight,
                              "max_in_flight": state.max_in_flight,
                              "health_checks": state.health_checks,
                              "authorization_seen": state.authorization_seen[-5:]})


async def _generate(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.requests += 1
    number = state.requests
    generation = state.generation
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    try:
        slots = state.slot()
        if slots is None:
            return await _answer(request, state.knobs, number)
        async with slots:
            return await _answer(request, state.knobs, number)
    finally:
        if generation == state.generation:
            state.in_flight -= 1


async def _answer(request: web.Request, knobs: Knobs,  # noqa: PLR0911, PLR0912 - one branch a fault
                  number: int) -> web.StreamResponse:
    state = request.app[STATE]
    authorization = request.headers.get("Authorization", "")
    if authorization:
        state.authorization_seen.append(authorization)
    if knobs.api_key is not None and authorization != f"Bearer {knobs.api_key}":
        return web.json_response({"error": {"message": "invalid API key"}}, status=401)
    try:
        document = await request.json()
    except ValueError:
        return web.json_response({"error": {"message": "body is not JSON"}}, status=400)
    if knobs.error_status is not None and (number - 1) % max(1, knobs.error_every) == 0:
        # Control characters and markup: the client must escape what it keeps.
        return web.json_response({"error": {"message": "injected failure \x1b[31m<b>\n"
                                             + "x" * 5000}}, status=knobs.error_status)
    chat = request.path.endswith("/chat/completions")
    model = str(document.get("model", "fault"))
    max_tokens = document.get("max_tokens")
    count = knobs.tokens if not isinstance(max_tokens, int) else min(knobs.tokens, max_tokens)
    prompt = document.get("messages", [{}])[-1].get("content", "") if chat \
        else document.get("prompt", "")
    prompt_tokens = len(str(prompt).split())
    words = [f" w{3 + (number + i) % 4093}" for i in range(count)]
    if not document.get("stream"):
        return web.json_response({"choices": [{"text": "".join(words),
                                               "finish_reason": "length"}],
                                  "usage": {"prompt_tokens": prompt_tokens,
                                            "completion_tokens": count}})
    if knobs.garbage == "http":
        assert request.transport is not None
        request.transport.write(b"this is not HTTP at all\r\n\r\n")
        request.transport.close()
        return web.Response()  # never sent: the transport is closed
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    if knobs.instant:
        parts = [_chunk(chat, model, None, None)] if chat else []
        parts += [_chunk(chat, model, w, "length" if i == count - 1 else None)
                  for i, w in enumerate(words)]
        parts += [_usage(model, prompt_tokens, count), b"data: [DONE]\n\n"]
        await response.write(b"".join(parts))
        await response.write_eof()
        return response
    if chat:
        await response.write(_chunk(chat, model, None, None))  # the role: not a token
    if knobs.ttft_s:
        await asyncio.sleep(knobs.ttft_s)
    for i, word in enumerate(words):
        if i and knobs.token_delay_s:
            await asyncio.sleep(knobs.token_delay_s)
        if i and knobs.work_module is not None:
            await asyncio.to_thread(importlib.import_module(knobs.work_module).work)
        if knobs.stall_after is not None and i == knobs.stall_after:
            await asyncio.sleep(3600)  # held open; a reset stops counting it
        if knobs.die_after is not None and i == knobs.die_after:
            if knobs.die_mode == "exit":
                await asyncio.sleep(0.01)
                os._exit(3)
            assert request.transport is not None
            request.transport.abort()
            return response
        if knobs.garbage is not None and i == knobs.garbage_after:
            await response.write(b"data: {this is not json\n\n" if knobs.garbage == "json"
                                 else b"\x00\xffgarbage bytes\n\n")
        last = i == count - 1 and knobs.finish
        await response.write(_chunk(chat, model, word, "length" if last else None))
    if knobs.usage:
        await response.write(_usage(model, prompt_tokens, count))
    if knobs.finish:
        await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def make_app(knobs: Knobs) -> web.Application:
    app = web.Application()
    app[STATE] = _State(knobs)
    app.router.add_get("/health", _health)
    app.router.add_get("/version", _version)
    app.router.add_post("/_knobs", _set_knobs)
    app.router.add_get("/_stats", _stats)
    app.router.add_post("/v1/completions", _generate)
    app.router.add_post("/v1/chat/completions", _generate)
    return app


async def _serve(knobs: Knobs, port: int = 0) -> None:
    runner = web.AppRunner(make_app(knobs), access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    server = site._server  # aiohttp keeps the bound socket there
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--knobs", default="{}", help="initial knobs, a JSON object")
    parser.add_argument("--port", type=int, default=0,
                        help="the port (default 0: the kernel chooses; a serving benchmark's "
                        "server command passes {port})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # aborted connections are the point here
    knobs = knobs_from(json.loads(args.knobs))
    if knobs.work_module is not None:  # a module that is not there: exit before listening
        importlib.import_module(knobs.work_module)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(knobs, args.port))


# -- the controller (in the test process) -------------------------------------------------


class FaultServer:
    """The fault server in a child process: `with FaultServer(tokens=4) as server:`."""

    def __init__(self, **knobs: Any) -> None:
        knobs_from(knobs)  # unknown names fail here, not in the child
        self._knobs = knobs
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> FaultServer:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.openai_fault_server", "--knobs",
             json.dumps(self._knobs)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL)
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._process.stdout], [], [], max(0.0, left))
            if not ready:
                self.stop()
                raise RuntimeError(f"the fault server did not start in {timeout_s} s")
            byte = os.read(self._process.stdout.fileno(), 1)  # unbuffered: select stays true
            if not byte:
                self.stop()
                raise RuntimeError("the fault server exited before it listened")
            line += byte
        self.port = int(line.split()[1])
        return self

    def _call(self, path: str, document: dict[str, Any] | None = None) -> Any:
        data = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method="POST"
                                         if data is not None else "GET")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read(1 << 20))

    def set(self, **knobs: Any) -> None:
        """Change some knobs, keeping the others."""
        knobs_from(knobs)
        self._call("/_knobs", knobs)

    def reset(self, **knobs: Any) -> None:
        """Every knob back to its default, then these."""
        knobs_from(knobs)
        self._call("/_knobs", {"_reset": True, **knobs})

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("/_stats")
        return result

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


if __name__ == "__main__":
    main()
