"""Fake OpenAI-compatible and Gemini REST servers for tests and benchmarks (stdlib only).

Both listen on ``127.0.0.1`` (an ephemeral port), answer with a configurable latency, and
inject faults on demand::

    with FakeOpenAIServer(latency=0.05, faults=FaultPlan(rates={"429": 0.1})) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        ...
        server.attempts      # HTTP attempts that reached the server

Faults (:class:`FaultPlan`):

* transport faults, decided per *attempt*: ``429`` (with ``Retry-After``), ``500``, ``503``,
  ``timeout`` (the server stalls for ``stall_s`` before answering), ``reset`` (the connection is
  closed with RST), ``bad_body`` (HTTP 200 whose body is not JSON), the permanent statuses
  ``400`` (invalid request), ``401`` / ``403`` (bad key), ``404`` (model not found), each with
  the provider's error body, and ``echo_auth`` (an ``echo_status`` error whose body repeats the
  request's ``Authorization`` / ``x-goog-api-key`` header, as some proxies do);
* content faults, decided per *prompt* (so a re-asked prompt gets a fresh draw):
  ``malformed`` (prose without JSON), ``truncated`` (JSON cut in half, finish reason
  length / MAX_TOKENS), ``wrong_answer`` (the answer is not among the options),
  ``missing_rationale`` (the field left out), ``numeric_question`` (the question is a number);
* a quota (``quota_rps``): a token bucket of ``quota_burst`` requests refilled at ``quota_rps``
  per second; an attempt that finds it empty gets a 429 whose ``Retry-After`` is the (fractional)
  time until the next token, as a real rate-limited endpoint answers.

``FaultPlan.per_prompt=["429", "500"]`` makes the first two attempts of *every* distinct prompt
fail that way (the third succeeds); ``rates`` draws faults at random but reproducibly
(from a hash of the seed, the prompt and the attempt number).

``GET /_fake/log`` returns the arrival times (``time.monotonic``) of every attempt, the peak
concurrency and every attempt as ``[arrival, answered, fault, retry_after, in_flight]``, for
clients in another process (``python -m medgr2.testing.fake_servers``).

The default reply is a valid VQA sample built from the prompt's ``- key: value`` label lines;
pass ``reply=`` (``prompt_text -> str``) to answer anything else (e.g. a judge's JSON).
The server is a minimal HTTP/1.1 keep-alive server on an asyncio event loop in a daemon thread
(stdlib only): latencies are ``asyncio.sleep``s, so thousands of open requests cost no threads,
and serving uses well under 0.1 CPU core at 256 requests/s. It speaks just enough HTTP for the
two SDKs (Content-Length bodies, no chunked uploads).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

STATUS_FAULTS = frozenset({"400", "401", "403", "404", "429", "500", "503"})
TRANSPORT_FAULTS = STATUS_FAULTS | {"timeout", "reset", "bad_body", "echo_auth"}
CONTENT_FAULTS = frozenset({"malformed", "truncated", "wrong_answer", "missing_rationale", "numeric_question"})


@dataclass
class FaultPlan:
    """Which faults a fake server injects.

    Attributes:
        per_prompt: Faults for the first attempts of every distinct prompt, in order.
        rates: Fault kind -> probability (transport faults per attempt, content faults per prompt).
        retry_after: The ``Retry-After`` header of a 429, in seconds (``None``: no header).
        stall_s: How long a ``timeout`` fault stalls before answering.
        seed: Seeds the random draws.
        echo_status: The status of an ``echo_auth`` reply.
        quota_rps: Requests per second the server accepts (``None``: no quota); see the module docstring.
        quota_burst: Size of the quota's token bucket.
    """

    per_prompt: Sequence[str] = ()
    rates: dict[str, float] = field(default_factory=dict)
    retry_after: float | None = 1.0
    stall_s: float = 30.0
    seed: int = 0
    echo_status: int = 500
    quota_rps: float | None = None
    quota_burst: float = 1.0

    def __post_init__(self) -> None:
        unknown = sorted((set(self.per_prompt) | set(self.rates)) - TRANSPORT_FAULTS - CONTENT_FAULTS)
        if unknown:
            known = sorted(TRANSPORT_FAULTS | CONTENT_FAULTS)
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {known}")

    def _draw(self, *parts: Any) -> float:
        h = hashlib.sha256(repr((self.seed, *parts)).encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    def transport_fault(self, prompt_key: str, attempt: int) -> str | None:
        """The transport fault of attempt ``attempt`` (0-based) of a prompt, if any."""
        if attempt < len(self.per_prompt) and self.per_prompt[attempt] in TRANSPORT_FAULTS:
            return self.per_prompt[attempt]
        for kind in sorted(TRANSPORT_FAULTS & set(self.rates)):
            if self._draw(kind, prompt_key, attempt) < self.rates[kind]:
                return kind
        return None

    def content_fault(self, prompt_key: str, attempt: int) -> str | None:
        """The content fault of a prompt's reply, if any."""
        if attempt < len(self.per_prompt) and self.per_prompt[attempt] in CONTENT_FAULTS:
            return self.per_prompt[attempt]
        for kind in sorted(CONTENT_FAULTS & set(self.rates)):
            if self._draw(kind, prompt_key) < self.rates[kind]:
                return kind
        return None


def lognormal_latency(median: float, p99_ratio: float = 10.0) -> Callable[[random.Random], float]:
    """A heavy-tailed latency: lognormal with the given median and p99 = ``p99_ratio`` × median."""
    sigma = math.log(p99_ratio) / 2.3263
    return lambda rng: rng.lognormvariate(math.log(median), sigma)


_LABEL = re.compile(r"^- (\w+): (.+)$", re.MULTILINE)
_DISTRACTORS = ["normal", "benign tumour", "malignant tumour", "inflammation", "fracture", "oedema", "cyst"]


def default_reply(prompt: str) -> dict[str, Any]:
    """A valid sample for a generation prompt (deterministic in the prompt)."""
    labels = dict(_LABEL.findall(prompt))
    key, answer = next(iter(sorted(labels.items())), ("finding", "normal"))
    rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
    distractors = [d for d in _DISTRACTORS if d.lower() != answer.lower()]
    options = [answer, *rng.sample(distractors, 3)]
    rng.shuffle(options)
    return {
        "question": f"What is the {key.replace('_', ' ')} shown in this image?",
        "options": options,
        "answer": answer,
        "rationale": f"The image shows features typical of {answer}.",
        "modality": "xray",
        "question_type": "disease_diagnosis",
    }


@dataclass
class Attempt:
    """One HTTP attempt the server received (``t``: arrival, ``done``: answer, both ``time.monotonic``;
    ``in_flight``: other attempts open at the server when this one was answered)."""

    t: float
    prompt_key: str
    attempt: int
    fault: str | None
    done: float = 0.0
    retry_after: float | None = None
    in_flight: int = 0


_PERMANENT = {
    400: "Invalid request: the parameter 'response_format' is not supported with this model",
    401: "Incorrect API key provided. You can find your API key in your account settings.",
    403: "Permission denied: the API key does not have access to this project.",
    404: "The model does not exist or you do not have access to it.",
}


class _Exchange:
    """One HTTP request on a connection and the means to answer it."""

    def __init__(
        self, writer: asyncio.StreamWriter, path: str, keep_alive: bool, headers: dict[str, str] | None = None
    ):
        self.writer = writer
        self.path = path
        self.keep_alive = keep_alive
        self.headers = headers or {}

    def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if not self.keep_alive:
            lines.append("Connection: close")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def reset(self) -> None:
        """Close the connection with RST (SO_LINGER 0), as a crashed peer or a proxy would."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.keep_alive = False
        self.writer.transport.abort()


class FakeServer:
    """Base of the fake servers: latency, fault injection, attempt log (see the module docstring)."""

    dialect = ""

    def __init__(
        self,
        *,
        latency: float | Callable[[random.Random], float] = 0.0,
        faults: FaultPlan | None = None,
        reply: Callable[[str], str] | None = None,
        seed: int = 0,
    ):
        self.latency = latency
        self.faults = faults or FaultPlan()
        self.reply = reply or (lambda prompt: json.dumps(default_reply(prompt)))
        self.log: list[Attempt] = []
        self.bodies: Counter[str] = Counter()  # "structured" / "images" counts
        self.last_body: dict[str, Any] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._tokens = self.faults.quota_burst
        self._refilled = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # --- lifecycle
    def start(self) -> FakeServer:
        """Start serving on 127.0.0.1 (an ephemeral port), in an event loop on a daemon thread."""
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=4096)
                )
                self._port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - re-raised by start()
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=serve, daemon=True, name=f"fake-{self.dialect}")
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving (open connections are dropped)."""
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return
        self._server = None

        def shutdown() -> None:
            server.close()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        assert self._thread is not None
        self._thread.join(timeout=10)
        self._loop = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self._server is not None, "the server is not started"
        return f"http://127.0.0.1:{self._port}"

    @property
    def attempts(self) -> int:
        """HTTP attempts received so far."""
        return len(self.log)

    def attempts_for(self, prompt_substring: str) -> int:
        """Attempts whose prompt contained ``prompt_substring`` (see :meth:`prompt_key`)."""
        return sum(1 for a in self.log if prompt_substring in a.prompt_key)

    # --- dialect hooks
    def extract(self, body: dict[str, Any]) -> tuple[str, int, bool]:
        """(prompt text, number of images, structured output requested)."""
        raise NotImplementedError

    def ok_body(self, text: str, truncated: bool, prompt: str) -> dict[str, Any]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    # --- HTTP
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one keep-alive connection: requests in turn until the client closes it."""
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    break
                method, path = line.decode("latin-1").split(" ", 2)[:2]
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                ex = _Exchange(writer, path, headers.get("connection", "").lower() != "close", headers)
                if method == "POST":
                    await self._post(ex, body)
                else:
                    self._get(ex)
                if not ex.keep_alive:
                    break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # resets (injected or the client's) and garbage end the connection
        finally:
            writer.close()

    def _get(self, ex: _Exchange) -> None:
        if ex.path.startswith("/_fake/log"):  # for benchmarks driving a server in another process
            with self._lock:
                data = {
                    "times": [a.t for a in self.log],
                    "max_in_flight": self.max_in_flight,
                    "attempts": [[a.t, a.done, a.fault, a.retry_after, a.in_flight] for a in self.log],
                }
            ex.send(200, json.dumps(data).encode())
            return
        ex.send(200, json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).encode())

    async def _post(self, ex: _Exchange, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            ex.send(400, b'{"error": {"message": "request body is not JSON"}}')
            return
        await self.handle(ex, body)

    # --- request handling
    def prompt_key(self, prompt: str) -> str:
        """How attempts are keyed: the prompt's first 200 characters plus a hash of the whole."""
        return prompt[:200] + "#" + hashlib.sha256(prompt.encode()).hexdigest()[:12]

    def _latency(self) -> float:
        if callable(self.latency):
            with self._lock:
                return float(self.latency(self._rng))
        return float(self.latency)

    def _quota(self, now: float) -> float | None:
        """Take a quota token; ``None`` when one was free, else the seconds until the next one."""
        rps = self.faults.quota_rps
        if rps is None:
            return None
        self._tokens = min(self.faults.quota_burst, self._tokens + (now - self._refilled) * rps)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / rps

    async def handle(self, ex: _Exchange, body: dict[str, Any]) -> None:
        prompt, n_images, structured = self.extract(body)
        key = self.prompt_key(prompt)
        with self._lock:
            n = self._seen[key]
            self._seen[key] += 1
            now = time.monotonic()
            fault = self.faults.transport_fault(key, n)
            wait = self._quota(now) if fault is None else None
            if wait is not None:  # over quota: answered at once, as a real rate limiter does
                fault = "quota"
            content = None if fault else self.faults.content_fault(key, n)
            entry = Attempt(now, key, n, fault or content)
            if wait is not None:
                entry.retry_after = round(wait + 0.0005, 3)
            elif fault == "429":
                entry.retry_after = self.faults.retry_after
            self.log.append(entry)
            self.last_body = body
            self.bodies["structured"] += structured
            self.bodies["images"] += n_images
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._answer(ex, prompt, fault, content, entry)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _auth_header(self, ex: _Exchange) -> str:
        for name in ("authorization", "x-goog-api-key", "api-key"):
            if name in ex.headers:
                return f"{name}: {ex.headers[name]}"
        return "(no authorization header)"

    async def _answer(
        self, ex: _Exchange, prompt: str, fault: str | None, content: str | None, entry: Attempt
    ) -> None:
        delay = self.faults.stall_s if fault == "timeout" else 0.0 if fault == "quota" else self._latency()
        if delay > 0:
            await asyncio.sleep(delay)
        with self._lock:
            entry.done, entry.in_flight = time.monotonic(), self.in_flight - 1
        if fault == "reset":
            ex.reset()
            return
        if fault == "quota":
            ex.send(429, json.dumps(self.error_body(429, "rate limit reached: quota")).encode(),
                    {"Retry-After": f"{entry.retry_after:g}"})
            return
        if fault in STATUS_FAULTS:
            status = int(fault)
            headers = {}
            if status == 429 and self.faults.retry_after is not None:
                headers["Retry-After"] = f"{self.faults.retry_after:g}"
            message = _PERMANENT.get(status, f"injected {fault}")
            ex.send(status, json.dumps(self.error_body(status, message)).encode(), headers)
            return
        if fault == "echo_auth":
            status = self.faults.echo_status
            message = f"upstream error; request headers were: {self._auth_header(ex)}"
            ex.send(status, json.dumps(self.error_body(status, message)).encode())
            return
        if fault == "bad_body":
            ex.send(200, b'{"choices": [ this is not json')
            return
        text = self.reply(prompt)
        if content == "malformed":
            text = "I am sorry, I cannot produce JSON for this image, but it looks interesting."
        elif content == "wrong_answer":
            data = json.loads(text)
            data["answer"] = "none of these options"
            text = json.dumps(data)
        elif content == "truncated":
            text = text[: len(text) // 2]
        elif content in ("missing_rationale", "numeric_question"):
            data = json.loads(text)
            if content == "missing_rationale":
                data.pop("rationale", None)
            else:
                data["question"] = 42
            text = json.dumps(data)
        ex.send(200, json.dumps(self.ok_body(text, content == "truncated", prompt)).encode())


class FakeOpenAIServer(FakeServer):
    """An OpenAI-compatible ``/v1/chat/completions`` server (point ``base_url`` at :attr:`base_url`)."""

    dialect = "openai"

    @property
    def base_url(self) -> str:
        """The ``base_url`` for ``openai.OpenAI``: ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    def extract(self, body: dict[str, Any]) -> tuple[str, int, bool]:
        texts, images = [], 0
        for msg in body.get("messages", []):
            content = msg.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            for part in content or []:
                if part.get("type") == "text":
                    texts.append(part.get("text", ""))
                elif part.get("type") == "image_url":
                    images += 1
        rf = body.get("response_format") or {}
        return "\n".join(texts), images, rf.get("type") == "json_schema"

    def ok_body(self, text: str, truncated: bool, prompt: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "fake-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length" if truncated else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": len(prompt) // 4,
                "completion_tokens": len(text) // 4,
                "total_tokens": len(prompt) // 4 + len(text) // 4,
            },
        }

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kinds = {429: "rate_limit_error", 400: "invalid_request_error", 401: "invalid_request_error",
                 403: "permission_error", 404: "invalid_request_error"}
        codes = {401: "invalid_api_key", 404: "model_not_found"}
        return {
            "error": {
                "message": message,
                "type": kinds.get(status, "server_error"),
                "code": codes.get(status, str(status)),
            }
        }


class FakeGeminiServer(FakeServer):
    """A Gemini REST server (``/v1beta/models/{model}:generateContent``); pass :attr:`base_url`
    as ``HttpOptions(base_url=...)``."""

    dialect = "gemini"

    @property
    def base_url(self) -> str:
        """The ``base_url`` for ``google.genai``: ``http://127.0.0.1:PORT``."""
        return self.url

    def extract(self, body: dict[str, Any]) -> tuple[str, int, bool]:
        texts, images = [], 0
        for content in body.get("contents", []):
            for part in content.get("parts", []):
                if "text" in part:
                    texts.append(part["text"])
                elif "inlineData" in part or "inline_data" in part:
                    images += 1
        cfg = body.get("generationConfig") or {}
        structured = bool(cfg.get("responseSchema") or cfg.get("responseJsonSchema"))
        return "\n".join(texts), images, structured

    def ok_body(self, text: str, truncated: bool, prompt: str) -> dict[str, Any]:
        return {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": "MAX_TOKENS" if truncated else "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": len(prompt) // 4,
                "candidatesTokenCount": len(text) // 4,
                "totalTokenCount": len(prompt) // 4 + len(text) // 4,
            },
            "modelVersion": "fake-gemini",
        }

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        names = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 400: "INVALID_ARGUMENT",
                 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
        return {"error": {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}}


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a fake until killed: ``python -m medgr2.testing.fake_servers --dialect openai --latency 1``.

    Prints the base URL on the first line of stdout (for benchmarks and manual pipeline tests).
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m medgr2.testing.fake_servers", description=main.__doc__)
    parser.add_argument("--dialect", choices=["openai", "gemini"], default="openai")
    parser.add_argument("--latency", type=float, default=0.0, help="Fixed latency in seconds.")
    parser.add_argument(
        "--lognormal-median",
        type=float,
        default=None,
        help="Heavy-tailed latency instead: lognormal with this median and p99 = 10x median.",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate-429", type=float, default=0.0, help="Share of attempts answered 429 at random.")
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After of those 429s (s).")
    parser.add_argument("--quota-rps", type=float, default=None, help="Requests per second accepted (429 above).")
    parser.add_argument("--quota-burst", type=float, default=1.0, help="Token bucket size of the quota.")
    args = parser.parse_args(argv)
    latency: Any = lognormal_latency(args.lognormal_median) if args.lognormal_median else args.latency
    cls = FakeOpenAIServer if args.dialect == "openai" else FakeGeminiServer
    plan = FaultPlan(rates={"429": args.rate_429} if args.rate_429 else {}, retry_after=args.retry_after,
                     quota_rps=args.quota_rps, quota_burst=args.quota_burst, seed=args.seed)
    server = cls(latency=latency, seed=args.seed, faults=plan).start()
    sys.stdout.write(server.base_url + "\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
