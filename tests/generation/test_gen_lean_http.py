"""The lean HTTP transport of the ``openai`` generator: the same request bytes as the openai SDK, the same
engine errors for every fault, and the HTTP/1.1 cases the fake servers do not produce (chunked, gzip,
close-delimited replies, stale keep-alive connections, TLS)."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import ssl
import subprocess
import threading

import pytest

from medgr2.testing.fake_servers import FakeOpenAIServer, FaultPlan
from medgr2_generation.backend_support import EncodedImage
from medgr2_generation.contract import SAMPLE_SCHEMA
from medgr2_generation.engine import FatalError, RetryableError
from medgr2_generation.lean_http import LeanClient, ProtocolError
from medgr2_generation.openai_backend import OpenAIGenerator
from medgr2_generation.options import OpenAIOptions

CHAT = {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

# What the SDK sends and the lean transport deliberately does not (see OpenAIGenerator.lean_headers).
SDK_ONLY = {"accept-encoding", "connection", "user-agent"}


class RawServer:
    """A 127.0.0.1 HTTP/1.1 server that records each raw request and answers with ``respond(index)``:
    the raw reply bytes, or ``None`` to close the connection without answering."""

    def __init__(self, respond=None, ssl_context=None):
        self.respond = respond or (lambda i: ok_reply(json.dumps(CHAT).encode()))
        self.ssl_context = ssl_context
        self.requests: list[dict] = []
        self.connections = 0

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = [tuple(x.strip() for x in ln.split(":", 1)) for ln in lines[1:] if ln]
                length = int(dict((k.lower(), v) for k, v in headers).get("content-length", 0))
                body = await reader.readexactly(length)
                self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
                reply = self.respond(len(self.requests) - 1)
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply.split(b"\r\n\r\n", 1)[0]:
                    return
        finally:
            writer.close()

    def __enter__(self):
        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            server = self.loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
            server.close()
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait()
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def url(self, scheme="http"):
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    def headers(self, i):
        return {k.lower(): v for k, v in self.requests[i]["headers"]}


def ok_reply(body: bytes, extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
            .encode() + body)


def generator(url, transport, **kw):
    return OpenAIGenerator(OpenAIOptions(**{"base_url": url, "model": "fake-model", "timeout_s": 5,
                                            "transport": transport, **kw}))


def send(gen, body):
    async def main():
        async with gen.open_transport() as transport:
            return await transport(body)

    return asyncio.run(main())


def test_lean_sends_byte_for_byte_the_request_of_the_sdk(monkeypatch):
    """The body the SDK makes from the payload dict (as the SDK transport sent it before the lean one
    existed) is byte-for-byte the lean transport's; so are method, path and the headers a server reads."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    image = EncodedImage(b"\x89PNG\r\n\x1a\n-bytes", "image/png", 4, 3)
    prompt = "Describe é, \u2028 and </script> \"quoted\" \\ with a tab\t and emoji \U0001f600"
    with RawServer() as server:
        sdk = generator(server.url(), "sdk")
        lean = generator(server.url(), "lean")
        replies = [send(sdk, sdk.payload(prompt, [image], SAMPLE_SCHEMA)),  # the dict, encoded by the SDK
                   send(sdk, sdk.request_body(prompt, [image], SAMPLE_SCHEMA)),  # pre-encoded bytes via the SDK
                   send(lean, lean.request_body(prompt, [image], SAMPLE_SCHEMA))]
        by_sdk, by_sdk_bytes, by_lean = server.requests
        h_sdk, h_lean = server.headers(0), server.headers(2)
    assert {r.text for r in replies} == {"hi"} and replies[2].input_tokens == 3
    assert by_lean["method"] == by_sdk["method"] == "POST"
    assert by_lean["path"] == by_sdk["path"] == "/v1/chat/completions"
    assert by_lean["body"] == by_sdk["body"] == by_sdk_bytes["body"]
    assert json.loads(by_lean["body"])["messages"][0]["content"][1]["image_url"]["url"].startswith(
        "data:image/png;base64,iVBORw0KGgo")
    for name in ("host", "authorization", "content-type", "accept", "content-length"):
        assert h_lean[name] == h_sdk[name], name
    assert h_lean["authorization"] == "Bearer sk-test-0123456789"
    left_out = {k for k in h_sdk if k not in h_lean}
    assert left_out - SDK_ONLY == {k for k in left_out if k.startswith("x-stainless-")}
    assert set(h_lean) - set(h_sdk) == set()  # nothing the SDK does not send (user-agent differs in value)
    assert h_lean["user-agent"].startswith("medgr2/")


def test_lean_request_without_images_or_schema_matches_the_sdk(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with RawServer() as server:
        sdk, lean = generator(server.url(), "sdk", temperature=0.0), generator(server.url(), "lean", temperature=0.0)
        send(sdk, sdk.payload("plain", [], None))
        send(lean, lean.request_body("plain", [], None))
        assert server.requests[0]["body"] == server.requests[1]["body"]
        assert server.headers(0)["authorization"] == server.headers(1)["authorization"] == "Bearer not-needed"


FAULTS = ["429", "500", "503", "400", "401", "403", "404", "bad_body", "reset", "echo_auth"]


def outcome(gen, url):
    try:
        reply = send(gen, gen.request_body("- diagnosis: x", [], None))
    except (RetryableError, FatalError) as exc:
        return type(exc), getattr(exc, "status", None), getattr(exc, "retry_after", None), str(exc)
    return "ok", reply.text


@pytest.mark.parametrize("fault", FAULTS)
def test_every_fault_maps_to_the_same_engine_error_as_the_sdk(fault, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-abcdefgh12345")
    plan = FaultPlan(rates={fault: 1.0}, retry_after=2.5)
    with FakeOpenAIServer(faults=plan) as server:
        sdk = outcome(generator(server.base_url, "sdk"), server.base_url)
        lean = outcome(generator(server.base_url, "lean"), server.base_url)
    assert lean[:3] == sdk[:3], (lean, sdk)
    if fault not in ("reset", "bad_body"):  # the wording of network errors differs; statuses are word for word
        assert lean[3] == sdk[3]
    assert "abcdefgh12345" not in lean[3]
    if fault == "429":
        assert lean[:3] == (RetryableError, 429, 2.5)


def test_a_timeout_is_retryable_on_both_transports():
    with FakeOpenAIServer(faults=FaultPlan(rates={"timeout": 1.0}, stall_s=3.0)) as server:
        for kind in ("sdk", "lean"):
            gen = generator(server.base_url, kind)
            gen.options = gen.options.model_copy(update={"timeout_s": 0.3})
            kind_, status, _, message = outcome(gen, server.base_url)
            assert kind_ is RetryableError and status is None and "timed out" in message


def test_a_refused_connection_is_retryable():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = outcome(generator(f"http://127.0.0.1:{port}/v1", "lean"), "")
    assert result[0] is RetryableError and "connection error" in result[3]


def test_a_non_json_error_body_is_worded_as_the_sdk_words_it():
    reply = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 11\r\n\r\nbad gateway"
    with RawServer(lambda i: reply) as server:
        sdk = outcome(generator(server.url(), "sdk"), "")
        lean = outcome(generator(server.url(), "lean"), "")
    assert lean == sdk == (RetryableError, 502, None, "HTTP 502: Error code: 502")


def chunked(body: bytes, extra: str = "") -> bytes:
    parts = [body[i:i + 7] for i in range(0, len(body), 7)]
    data = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\nX-Trailer: t\r\n\r\n"
    return f"HTTP/1.1 200 OK\r\n{extra}Transfer-Encoding: chunked\r\n\r\n".encode() + data


@pytest.mark.parametrize("style", ["length", "chunked", "gzip", "chunked-gzip", "close"])
def test_reply_framings_and_keep_alive(style):
    body = json.dumps(CHAT).encode()
    replies = {
        "length": lambda i: ok_reply(body),
        "chunked": lambda i: chunked(body),
        "gzip": lambda i: ok_reply(gzip.compress(body), "Content-Encoding: gzip\r\n"),
        "chunked-gzip": lambda i: chunked(gzip.compress(body), "Content-Encoding: gzip\r\n"),
        "close": lambda i: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body,
    }
    with RawServer(replies[style]) as server:
        async def main():
            client = LeanClient(server.url(), {"Content-Type": "application/json"}, timeout_s=5)
            out = [await client.post("/chat/completions", b"{}") for _ in range(3)]
            await client.close()
            return out, client.opened

        out, opened = asyncio.run(main())
    assert all(r.status == 200 and json.loads(r.body) == CHAT for r in out)
    assert opened == (3 if style == "close" else 1)  # keep-alive reuses one connection


def test_a_stale_keep_alive_connection_is_retried_on_a_fresh_one():
    """The server drops every second connection without answering (as one whose keep-alive timer
    fired while the request was on its way): the client sends again on a new connection, once."""
    body = json.dumps(CHAT).encode()
    with RawServer(lambda i: None if i % 2 == 1 else ok_reply(body)) as server:
        async def main():
            client = LeanClient(server.url(), {}, timeout_s=5)
            first = await client.post("/chat/completions", b"{}")
            second = await client.post("/chat/completions", b"{}")
            await client.close()
            return first, second, client.opened

        first, second, opened = asyncio.run(main())
        assert len(server.requests) == 3
    assert first.status == second.status == 200 and opened == 2


def test_a_fresh_connection_closed_before_answering_is_an_error():
    with RawServer(lambda i: None) as server:
        async def main():
            client = LeanClient(server.url(), {}, timeout_s=5)
            try:
                await client.post("/chat/completions", b"{}")
            finally:
                await client.close()

        with pytest.raises(ProtocolError, match="closed the connection before answering"):
            asyncio.run(main())


def test_garbage_instead_of_http_is_a_protocol_error():
    with RawServer(lambda i: b"SSH-2.0-OpenSSH\r\n\r\n") as server:
        result = outcome(generator(server.url(), "lean"), "")
    assert result[0] is RetryableError and "not an HTTP/1.x status line" in result[3]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_through_ssl_with_the_system_trust_settings(tmp_path, monkeypatch):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # what ssl.create_default_context trusts
    with RawServer(ssl_context=server_ctx) as server:
        reply = send(generator(server.url("https"), "lean"), b"{}")
        assert server.requests[0]["path"] == "/v1/chat/completions"
    assert reply.text == "hi"
    monkeypatch.delenv("SSL_CERT_FILE")
    with RawServer(ssl_context=server_ctx) as server:  # an untrusted certificate is a connection error
        result = outcome(generator(server.url("https"), "lean"), "")
    assert result[0] is RetryableError and "CERTIFICATE_VERIFY_FAILED" in result[3]


def test_auto_uses_the_sdk_when_a_proxy_applies(monkeypatch):
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    gen = generator("https://api.example.org/v1", "auto")
    assert gen.transport_kind() == "lean"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert gen.transport_kind() == "sdk"
    assert generator("https://api.example.org/v1", "lean").transport_kind() == "lean"
    monkeypatch.setenv("NO_PROXY", "api.example.org")
    assert gen.transport_kind() == "lean"


def test_the_default_base_url_is_the_sdks(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert OpenAIGenerator(OpenAIOptions()).base_url() == "https://api.openai.com/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert OpenAIGenerator(OpenAIOptions()).base_url() == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("n_images", [0, 1, 3])
@pytest.mark.parametrize("schema", [SAMPLE_SCHEMA, None, {"type": "object", "properties": {"é": {"enum": ["\x00"]}}}])
def test_the_spliced_body_is_the_encoded_payload(n_images, schema):
    gen = generator("http://127.0.0.1:9/v1", "lean", temperature=0.3, model="mødel \"x\"")
    images = [EncodedImage(bytes([i]) * 50, "image/jpeg", 2, 2) for i in range(n_images)]
    for prompt in ("", "plain", "ctl \x00\x1f \u2028 é \"q\" \\ </b> \U0001f600", "\x00medgr2-slot-0\x00"):
        from medgr2_generation.openai_backend import encode_json

        assert gen.request_body(prompt, images, schema) == encode_json(gen.payload(prompt, images, schema))


def test_deadlines_time_out_only_the_overdue_and_leave_real_cancellation_alone():
    from medgr2_generation.lean_http import Deadlines

    async def main():
        deadlines = Deadlines(tick=0.02)

        async def one(delay, limit):
            try:
                await deadlines.run(limit, asyncio.sleep(delay))
                return "ok"
            except TimeoutError:
                task = asyncio.current_task()
                return "timeout" + ("" if not hasattr(task, "cancelling") or task.cancelling() == 0 else "!")

        t = asyncio.get_running_loop().time()
        out = await asyncio.gather(*(one(d, lim) for d, lim in [(0.01, 0.2), (0.5, 0.1), (0.05, 0.2), (5, 0.15)]))
        took = asyncio.get_running_loop().time() - t
        victim = asyncio.ensure_future(deadlines.run(10, asyncio.sleep(10)))
        await asyncio.sleep(0.05)
        victim.cancel()
        try:
            await victim
            cancelled = False
        except asyncio.CancelledError:
            cancelled = True
        deadlines.close()
        return out, took, cancelled, deadlines._open

    out, took, cancelled, left = asyncio.run(main())
    assert out == ["ok", "timeout", "ok", "timeout"] and took < 0.4
    assert cancelled and not left
