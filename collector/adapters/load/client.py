"""One streaming request to an OpenAI-compatible server (aiohttp), as a RequestRecord.

`api` "completions" posts {model, prompt, max_tokens, stream, stream_options} to
{base}/v1/completions; "chat" posts {model, messages, ...} to {base}/v1/chat/completions.
The server-sent events are parsed incrementally and defensively: `data: {...}` lines,
`data: [DONE]`, comments and the other SSE fields (event, id, retry) ignored, anything else
is garbage. Each chunk that carries text (choices[0].text, or choices[0].delta.content for
chat) is one token arrival, stamped with time.perf_counter() when its bytes were read; the
token counts come from the server's `usage` when it sends one, else the text chunks are
counted.

Outcomes:
- "ok": at least one token and a finish (a finish_reason, or `data: [DONE]`);
- "error": a non-2xx status (kept, with a short escaped excerpt of the body), malformed JSON
  or garbage in the stream, a line or stream over its bound, a stream that ends without a
  token or without a finish, an error object in the stream, a refused, reset or dropped
  connection;
- "timeout": the request took longer than `timeout_s` in all, or no byte came for
  `stall_timeout_s` (default `timeout_s`): a stalled stream.

Every read is bounded: a line is at most MAX_LINE_BYTES, a stream MAX_STREAM_BYTES, an error
body excerpt MAX_ERROR_BODY bytes read and ERROR_CHARS characters kept.

The API key, when there is one, goes in `Authorization: Bearer ...` and nowhere else: it is
left out of Target's repr and removed from every error text.

Client overhead (RequestRecord.client_overhead_s): the CPU time of this thread
(time.thread_time, CLOCK_THREAD_CPUTIME_ID, ns resolution) spent in this request's own
steps: building the body and headers, the SSE parsing, the record. The clock is paused
around every await (connecting, sending, waiting for bytes), so time spent waiting on the
network, time other requests' coroutines run, and time the OS gives other processes are not
counted. aiohttp's own work inside the awaits (writing the request, its HTTP parser in the
event loop's callbacks) is not counted either; the process CPU per request
(benchmarks/loadgen_accuracy.py) gives the whole client's cost.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from collector.domain.errors import one_line
from collector.domain.load_stats import Outcome, RequestRecord

from .prompts import Prompt

Api = Literal["completions", "chat"]
PATHS: dict[str, str] = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
MAX_LINE_BYTES = 1 << 20
MAX_STREAM_BYTES = 64 << 20
MAX_ERROR_BODY = 4096
ERROR_CHARS = 200
MASK = "***"
_IGNORED_FIELDS = (b"event:", b"id:", b"retry:", b"event", b"id", b"retry")


@dataclass(frozen=True)
class Target:
    """An OpenAI-compatible server: its base URL (no /v1), the model name to ask for, the
    API, and an optional key (never shown)."""

    base_url: str
    model: str
    api: Api = "completions"
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.api not in PATHS:
            raise ValueError(f"api must be one of {', '.join(PATHS)}, got {self.api!r}")
        if self.api_key is not None and (not self.api_key or "\n" in self.api_key
                                         or "\r" in self.api_key):
            raise ValueError("the API key must be one non-empty line")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + PATHS[self.api]

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def body(self, prompt: Prompt) -> bytes:
        document: dict[str, Any] = {"model": self.model, "max_tokens": prompt.output_tokens,
                                    "stream": True,
                                    "stream_options": {"include_usage": True}}
        if self.api == "chat":
            document["messages"] = [{"role": "user", "content": prompt.text}]
        else:
            document["prompt"] = prompt.text
        return json.dumps(document).encode()

    def hide(self, text: str) -> str:
        """`text` as one bounded, printable line without the key (as is or escaped)."""
        line = one_line(text)
        if self.api_key:
            for form in {self.api_key, one_line(self.api_key),
                         json.dumps(self.api_key)[1:-1], repr(self.api_key)[1:-1]}:
                line = line.replace(form, MASK)
        return line if len(line) <= ERROR_CHARS else line[:ERROR_CHARS] + "..."


def open_session() -> aiohttp.ClientSession:
    """A session for a run: no connection limit (the load generator bounds what is in
    flight; a connector queue would hide sends behind their recorded time), keep-alive."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                 timeout=aiohttp.ClientTimeout(total=None),
                                 auto_decompress=True, raise_for_status=False)


class _Failed(Exception):
    """The request failed: `outcome` and a message (already safe to show)."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


class _Stream:
    """The state of one response's SSE parse."""

    __slots__ = ("chat", "done", "finished", "input_tokens", "output_tokens", "text_chunks",
                 "tokens")

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.tokens: list[float] = []
        self.text_chunks = 0
        self.finished = False
        self.done = False
        self.output_tokens: int | None = None
        self.input_tokens: int | None = None

    def line(self, raw: bytes, at: float) -> None:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line or line.startswith(b":"):
            return
        if not line.startswith(b"data:"):
            if line.startswith(_IGNORED_FIELDS):
                return
            raise _Failed("error", f"not a server-sent event in the stream: {line[:80]!r}")
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(payload)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise _Failed("error", f"malformed JSON in the stream: {payload[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise _Failed("error", f"a stream chunk is not an object: {payload[:80]!r}")
        if "error" in chunk:
            raise _Failed("error", f"error in the stream: {str(chunk['error'])[:160]}")
        self._choices(chunk.get("choices"), at)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.output_tokens = _count(usage.get("completion_tokens"), self.output_tokens)
            self.input_tokens = _count(usage.get("prompt_tokens"), self.input_tokens)

    def _choices(self, choices: object, at: float) -> None:
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        if self.chat:
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
        else:
            text = choice.get("text")
        if isinstance(text, str) and text:
            self.tokens.append(at)
            self.text_chunks += 1
        if choice.get("finish_reason"):
            self.finished = True


def _count(value: object, previous: int | None) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return previous


class _Clock:
    """This thread's CPU time in the request's own steps (paused around awaits)."""

    __slots__ = ("_mark", "spent")

    def __init__(self) -> None:
        self.spent = 0.0
        self._mark: float | None = time.thread_time()

    def pause(self) -> None:
        if self._mark is not None:
            self.spent += time.thread_time() - self._mark
            self._mark = None

    def resume(self) -> None:
        if self._mark is None:
            self._mark = time.thread_time()


async def send(session: aiohttp.ClientSession, target: Target, prompt: Prompt, *,
               run_start: float, timeout_s: float, stall_timeout_s: float | None = None,
               scheduled_s: float | None = None) -> RequestRecord:
    """Send one streaming request and return its record: times in seconds since
    `run_start` (a time.perf_counter() value), `scheduled_s` passed through. Never raises
    for what the server or the network does (only cancellation propagates)."""
    clock = _Clock()
    stall = timeout_s if stall_timeout_s is None else min(stall_timeout_s, timeout_s)
    stream = _Stream(target.api == "chat")
    body = target.body(prompt)
    headers = target.headers()
    per_read = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=stall)
    outcome: Outcome = "ok"
    error: str | None = None
    sent = time.perf_counter()
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            clock.pause()
            response = await session.post(target.url, data=body, headers=headers,
                                          timeout=per_read)
            clock.resume()
            try:
                if not 200 <= response.status < 300:
                    clock.pause()
                    excerpt = await response.content.read(MAX_ERROR_BODY)
                    clock.resume()
                    text = excerpt.decode("utf-8", "replace").strip()
                    raise _Failed("error", f"HTTP {response.status}: {text or '(no body)'}")
                await _read_events(response, stream, clock)
            finally:
                response.release()
        if not stream.tokens:
            raise _Failed("error", "the stream ended without any token")
        if not (stream.finished or stream.done):
            raise _Failed("error", "the stream ended without a finish (no finish_reason "
                                   "and no [DONE])")
    except _Failed as failure:
        clock.resume()
        outcome, error = failure.outcome, failure.message
    except TimeoutError:
        clock.resume()
        outcome = "timeout"
        error = (f"the request took longer than {timeout_s:g} s ({len(stream.tokens)} "
                 "token(s) received)" if deadline.expired() else
                 f"stalled: no byte for {stall:g} s after {len(stream.tokens)} token(s)")
    except (aiohttp.ClientError, OSError, ValueError) as failure:
        clock.resume()
        outcome, error = "error", _connection_failure(failure, len(stream.tokens))
    end = time.perf_counter()
    input_tokens = stream.input_tokens if stream.input_tokens is not None \
        else prompt.input_tokens
    output_tokens = stream.output_tokens if stream.output_tokens is not None \
        else stream.text_chunks
    record = RequestRecord(
        sent_s=sent - run_start, end_s=end - run_start, outcome=outcome,
        token_s=tuple(t - run_start for t in stream.tokens), output_tokens=output_tokens,
        input_tokens=input_tokens, scheduled_s=scheduled_s,
        client_overhead_s=0.0, error=None if error is None else target.hide(error))
    clock.pause()
    return _with_overhead(record, clock.spent)


def _connection_failure(failure: BaseException, tokens: int) -> str:
    if isinstance(failure, aiohttp.ClientConnectorError):
        return f"cannot connect: {failure.strerror or failure}"
    if isinstance(failure, aiohttp.ServerDisconnectedError):
        return f"the server closed the connection after {tokens} token(s)"
    if isinstance(failure, aiohttp.ClientPayloadError):
        return f"the stream broke after {tokens} token(s): {failure}"
    return f"{type(failure).__name__}: {failure}"


def _with_overhead(record: RequestRecord, spent: float) -> RequestRecord:
    return RequestRecord(record.sent_s, record.end_s, record.outcome, record.token_s,
                         record.output_tokens, record.input_tokens, record.scheduled_s,
                         spent, record.error)


async def _read_events(response: aiohttp.ClientResponse, stream: _Stream,
                       clock: _Clock) -> None:
    """Read the body to its end chunk by chunk, splitting lines (bounded) and parsing each
    one until [DONE]."""
    buffer = b""
    total = 0
    content = response.content
    while True:
        clock.pause()
        chunk = await content.readany()
        at = time.perf_counter()
        clock.resume()
        if not chunk:
            break
        total += len(chunk)
        if total > MAX_STREAM_BYTES:
            raise _Failed("error", f"the stream is over {MAX_STREAM_BYTES} bytes")
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            if not stream.done:  # after [DONE]: drained (bounded), so the connection
                stream.line(buffer[start:end], at)  # is kept alive, not parsed
            start = end + 1
        buffer = buffer[start:]
        if len(buffer) > MAX_LINE_BYTES:
            raise _Failed("error", f"a stream line is over {MAX_LINE_BYTES} bytes")
    if buffer.strip() and not stream.done:
        stream.line(buffer, time.perf_counter())
