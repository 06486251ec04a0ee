"""A lean HTTP/1.1 client for JSON APIs: asyncio streams, keep-alive, one pool of connections.

The ``openai`` generator's default transport (``transport: lean``) posts through it instead of the
openai SDK + httpx, which cost most of the client's CPU per request (``benchmarks/bench_engine_vs_bare.py``):
the body is built and JSON-encoded once per request (never again on a retry), and a request is one
write of prebuilt header bytes plus the body, then one read of the head and one of the body.

What it speaks: ``POST`` with a ``Content-Length`` body; replies with ``Content-Length``, ``chunked``
or read-to-close bodies, ``gzip`` / ``deflate`` content encodings; HTTP/1.1 keep-alive (an idle
connection the server closed is noticed before reuse, and a reused connection that the server closes
before answering is retried once on a fresh one, as a stale keep-alive is not a failed request); TLS
through :mod:`ssl` (system certificates, ``SSL_CERT_FILE`` honoured) when the URL is ``https``.
No proxies: the generator uses the SDK transport when a proxy variable applies to the host.

Failures are plain exceptions for the caller to map (see :func:`medgr2_generation.openai_backend`):
:class:`TimeoutError` for a request over its timeout, :class:`ConnectionError` / :class:`OSError` /
:class:`asyncio.IncompleteReadError` / :class:`ProtocolError` for the network and broken replies.
Nothing here knows about the engine, so the module is usable (and testable) on its own.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import zlib
from collections.abc import Awaitable, Mapping
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

__all__ = ["Deadlines", "HttpResponse", "LeanClient", "ProtocolError", "proxy_for", "within"]

T = TypeVar("T")

MAX_HEAD = 1 << 20
"""Largest reply head (status line and headers) accepted, in bytes."""

_SMALL_BODY = 64 * 1024  # bodies under this are sent in one write with the head (one copy, one syscall)


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """``await awaitable``, raising :class:`TimeoutError` after ``seconds`` (``asyncio.timeout`` where there
    is one: Python 3.11+, no extra task per call as ``asyncio.wait_for`` makes)."""
    if _TIMEOUT is None:
        return await asyncio.wait_for(awaitable, seconds)
    async with _TIMEOUT(seconds):
        return await awaitable


_TIMEOUT = getattr(asyncio, "timeout", None)


class Deadlines:
    """Timeouts for many concurrent requests with one timer instead of one per request.

    :meth:`run` records its deadline; while any is recorded, a watchdog wakes every ``tick`` seconds and
    cancels the task of each overdue one, whose :meth:`run` then raises :class:`TimeoutError`. A request
    costs a dict insert and delete, not a timer handle pushed on (and cancelled from) the event loop's
    heap; the price is precision: a timeout fires up to one ``tick`` late.
    """

    def __init__(self, tick: float = 0.25):
        self.tick = tick
        self._open: dict[object, tuple[float, asyncio.Task[Any]]] = {}
        self._expired: set[object] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def run(self, seconds: float, awaitable: Awaitable[T]) -> T:
        """``await awaitable``, raising :class:`TimeoutError` once ``seconds`` (plus up to a tick) passed."""
        task = asyncio.current_task()
        if task is None:
            return await within(seconds, awaitable)
        loop = asyncio.get_running_loop()
        token = object()
        self._open[token] = (loop.time() + seconds, task)
        if self._timer is None:
            self._timer = loop.call_later(min(self.tick, seconds), self._check, loop)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if token not in self._expired:
                raise
            if hasattr(task, "uncancel"):
                task.uncancel()  # this cancellation was ours: the task is not being cancelled
            raise TimeoutError(f"timed out after {seconds:g} s") from None
        finally:
            del self._open[token]
            self._expired.discard(token)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for token, (deadline, task) in list(self._open.items()):
            if deadline <= now and token not in self._expired:
                self._expired.add(token)
                task.cancel()
        if self._open:
            self._timer = loop.call_later(self.tick, self._check, loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ProtocolError(ConnectionError):
    """A reply that is not valid HTTP/1.1 (or a connection closed mid-reply)."""


class HttpResponse(NamedTuple):
    """One reply: status, headers (names lower-case) and the decoded body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def proxy_for(url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) applies to
    ``url``, or ``None``: the SDK clients honour these, the lean client does not."""
    if not any(name.lower().endswith("_proxy") and name.lower() != "no_proxy" for name in os.environ):
        return None  # the common case, without importing urllib.request
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


class LeanClient:
    """Posts JSON bodies to one server over a pool of keep-alive connections.

    Args:
        base_url: ``http(s)://host[:port][/base/path]``; request paths are appended to its path.
        headers: Headers sent with every request (``Host`` and ``Content-Length`` are added).
        timeout_s: Limit of one request (connect, send, and the whole reply).
        max_idle: Idle connections kept for reuse at most (the concurrency: one per request in flight).
        ssl_context: For ``https`` (default: :func:`ssl.create_default_context`).
    """

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout_s: float,
        max_idle: int = 64,
        ssl_context: ssl.SSLContext | None = None,
    ):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {base_url!r} is not an http:// or https:// URL")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        default_port = self.port == (443 if self.ssl else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.timeout_s = timeout_s
        self._deadlines = Deadlines(tick=min(0.25, timeout_s / 20))
        self.max_idle = max_idle
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._heads: dict[str, bytes] = {}
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        """Connections opened so far (a measure of reuse)."""

    def _head(self, path: str) -> bytes:
        """The request head up to the ``Content-Length`` value (built once per path)."""
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = (
                f"POST {self.base_path}{path} HTTP/1.1\r\nHost: {self.host_header}\r\n{self._fixed}Content-Length: "
            ).encode("latin-1")
        return head

    def post(self, path: str, body: bytes) -> Awaitable[HttpResponse]:
        """POST ``body`` to ``base_path + path`` (awaitable); raises :class:`TimeoutError` past ``timeout_s``."""
        return self._deadlines.run(self.timeout_s, self._post(path, body))

    async def _post(self, path: str, body: bytes) -> HttpResponse:
        while self._idle:
            conn = self._idle.pop()
            if conn[0].at_eof() or conn[1].is_closing():
                conn[1].close()
                continue
            try:
                return await self._exchange(conn, path, body, reused=True)
            except _Stale:
                continue  # the server closed the idle connection before reading the request
        return await self._exchange(await self._connect(), path, body, reused=False)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened += 1
        return await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl, limit=MAX_HEAD, server_hostname=self.host if self.ssl else None
        )

    async def _exchange(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str, body: bytes, *, reused: bool
    ) -> HttpResponse:
        reader, writer = conn
        keep = False
        try:
            head = b"%s%d\r\n\r\n" % (self._head(path), len(body))
            if len(body) < _SMALL_BODY:
                writer.write(head + body)
            else:
                writer.write(head)
                writer.write(body)
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if reused and not exc.partial:
                    raise _Stale from exc
                raise ProtocolError("the server closed the connection before answering") from exc
            except ConnectionResetError as exc:
                if reused:
                    raise _Stale from exc
                raise
            except asyncio.LimitOverrunError as exc:
                raise ProtocolError(f"the reply head is over {MAX_HEAD} bytes") from exc
            status, headers, keep = _parse_head(raw)
            length = headers.get("content-length")
            if (length is not None and length.isascii() and length.isdigit() and 200 <= status
                    and status not in (204, 304) and "transfer-encoding" not in headers):
                data, delimited = await reader.readexactly(int(length)), True  # _read_body's common case, inline
            else:
                data, delimited = await _read_body(reader, headers, status)
            keep = keep and delimited
            if not keep:
                writer.close()
            encoding = headers.get("content-encoding", "identity").lower()
            if encoding in ("gzip", "deflate"):
                data = zlib.decompress(data, 31 if encoding == "gzip" else 15)
            elif encoding not in ("identity", ""):
                raise ProtocolError(f"unsupported content-encoding {encoding!r}")
            return HttpResponse(status, headers, data)
        except BaseException:
            keep = False
            writer.close()
            raise
        finally:
            if keep:
                if len(self._idle) < self.max_idle:
                    self._idle.append(conn)
                else:
                    writer.close()

    async def close(self) -> None:
        """Close the idle connections."""
        self._deadlines.close()
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass


class _Stale(Exception):
    """A reused keep-alive connection was closed by the server before any reply byte."""


def _parse_head(raw: bytes) -> tuple[int, dict[str, str], bool]:
    """(status, headers, keep-alive) of a reply head."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep or not name or name[-1] in " \t":  # RFC 9112: no space before the colon
                raise ProtocolError(f"malformed header line {line[:80]!r}")
            name = name.lower()
            value = value.strip()
            old = headers.get(name)
            headers[name] = value if old is None else f"{old}, {value}"
    conn = headers.get("connection", "").lower()
    keep = "close" not in conn if parts[0] == "HTTP/1.1" else "keep-alive" in conn
    return int(parts[1]), headers, keep


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], status: int) -> tuple[bytes, bool]:
    """The body, and whether its end was delimited (false: it ended with the connection)."""
    if status in (204, 304) or 100 <= status < 200:
        return b"", True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(chunks), True
            chunk = await reader.readexactly(size + 2)
            if chunk[-2:] != b"\r\n":
                raise ProtocolError("a chunk does not end with CRLF")
            chunks.append(chunk[:-2])
    length = headers.get("content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise ProtocolError(f"bad content-length {length!r}") from None
        return await reader.readexactly(n), True
    return await reader.read(), False  # a body that ends when the connection does
