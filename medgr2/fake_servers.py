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
  closed with RST), ``bad_body`` (HTTP 200 whose body is not JSON);
* content faults, decided per *prompt* (so a re-asked prompt gets a fresh draw):
  ``malformed`` (prose without JSON), ``truncated`` (JSON cut in half, finish reason
  length / MAX_TOKENS), ``wrong_answer`` (the answer is not among the options).

``FaultPlan.per_prompt=["429", "500"]`` makes the first two attempts of *every* distinct prompt
fail that way (the third succeeds); ``rates`` draws faults at random but reproducibly
(from a hash of the seed, the prompt and the attempt number).

``GET /_fake/log`` returns the arrival times (``time.monotonic``) of every attempt and the
peak concurrency, for clients in another process (``python -m medgr2.fake_servers``).

The default reply is a valid VQA sample built from the prompt's ``- key: value`` label lines;
pass ``reply=`` (``prompt_text -> str``) to answer anything else (e.g. a judge's JSON).
A stdlib threading server sustains a few hundred requests per second: fine for API-like
latencies (0.05–2 s), not for measuring thousands of requests per second.
"""

from __future__ import annotations

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TRANSPORT_FAULTS = frozenset({"429", "500", "503", "timeout", "reset", "bad_body"})
CONTENT_FAULTS = frozenset({"malformed", "truncated", "wrong_answer"})


@dataclass
class FaultPlan:
    """Which faults a fake server injects.

    Attributes:
        per_prompt: Faults for the first attempts of every distinct prompt, in order.
        rates: Fault kind -> probability (transport faults per attempt, content faults per prompt).
        retry_after: The ``Retry-After`` header of a 429, in seconds (``None``: no header).
        stall_s: How long a ``timeout`` fault stalls before answering.
        seed: Seeds the random draws.
    """

    per_prompt: Sequence[str] = ()
    rates: dict[str, float] = field(default_factory=dict)
    retry_after: float | None = 1.0
    stall_s: float = 30.0
    seed: int = 0

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
    """One HTTP attempt the server received."""

    t: float
    prompt_key: str
    attempt: int
    fault: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        fake = self.server.fake
        if self.path.startswith("/_fake/log"):  # for benchmarks driving a server in another process
            with fake._lock:
                data = {"times": [a.t for a in fake.log], "max_in_flight": fake.max_in_flight}
            self._send(200, json.dumps(data).encode())
            return
        self._send(
            200, json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).encode()
        )

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send(400, b'{"error": {"message": "request body is not JSON"}}')
            return
        self.server.fake.handle(self, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:  # resets and timeouts are intended
        pass


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
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle
    def start(self) -> FakeServer:
        """Start serving on 127.0.0.1 (an ephemeral port)."""
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"fake-{self.dialect}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self._httpd is not None, "the server is not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

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

    # --- request handling
    def prompt_key(self, prompt: str) -> str:
        """How attempts are keyed: the prompt's first 200 characters plus a hash of the whole."""
        return prompt[:200] + "#" + hashlib.sha256(prompt.encode()).hexdigest()[:12]

    def _latency(self) -> float:
        if callable(self.latency):
            with self._lock:
                return float(self.latency(self._rng))
        return float(self.latency)

    def handle(self, h: _Handler, body: dict[str, Any]) -> None:
        prompt, n_images, structured = self.extract(body)
        key = self.prompt_key(prompt)
        with self._lock:
            n = self._seen[key]
            self._seen[key] += 1
            fault = self.faults.transport_fault(key, n)
            content = None if fault else self.faults.content_fault(key, n)
            self.log.append(Attempt(time.monotonic(), key, n, fault or content))
            self.last_body = body
            self.bodies["structured"] += structured
            self.bodies["images"] += n_images
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._answer(h, prompt, fault, content)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, h: _Handler, prompt: str, fault: str | None, content: str | None) -> None:
        delay = self._latency()
        if fault == "timeout":
            delay = self.faults.stall_s
        if delay > 0:
            time.sleep(delay)
        if fault == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            return
        if fault in ("429", "500", "503"):
            status = int(fault)
            headers = {}
            if status == 429 and self.faults.retry_after is not None:
                headers["Retry-After"] = f"{self.faults.retry_after:g}"
            h._send(status, json.dumps(self.error_body(status, f"injected {fault}")).encode(), headers)
            return
        if fault == "bad_body":
            h._send(200, b'{"choices": [ this is not json')
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
        h._send(200, json.dumps(self.ok_body(text, content == "truncated", prompt)).encode())


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
        return {
            "error": {
                "message": message,
                "type": "rate_limit_error" if status == 429 else "server_error",
                "code": str(status),
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
        names = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
        return {"error": {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}}


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a fake until killed: ``python -m medgr2.fake_servers --dialect openai --latency 1``.

    Prints the base URL on the first line of stdout (for benchmarks and manual pipeline tests).
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m medgr2.fake_servers", description=main.__doc__)
    parser.add_argument("--dialect", choices=["openai", "gemini"], default="openai")
    parser.add_argument("--latency", type=float, default=0.0, help="Fixed latency in seconds.")
    parser.add_argument(
        "--lognormal-median",
        type=float,
        default=None,
        help="Heavy-tailed latency instead: lognormal with this median and p99 = 10x median.",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    latency: Any = lognormal_latency(args.lognormal_median) if args.lognormal_median else args.latency
    cls = FakeOpenAIServer if args.dialect == "openai" else FakeGeminiServer
    server = cls(latency=latency, seed=args.seed).start()
    sys.stdout.write(server.base_url + "\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
