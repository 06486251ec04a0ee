"""The request engine: continuous scheduling, rate limits, one retry loop, a crash-safe cache.

Every API-backed component (generators, LLM judges) sends its requests through a
:class:`RequestEngine`. The engine knows nothing about HTTP or SDKs: a backend hands it a
*transport*, an ``async`` function ``payload -> Reply`` that raises :class:`RetryableError`
(408, 429, 5xx, timeouts, connection resets; with the server's ``Retry-After`` when it sent one)
or :class:`FatalError` (anything that retrying cannot fix). SDK-level retries must be off
(openai ``max_retries=0``, google-genai without ``retry_options``) so that this loop is the
only one.

What the engine guarantees:

* **Continuous scheduling.** :meth:`RequestEngine.run_jobs` keeps ``concurrency`` jobs in flight:
  a new one starts as soon as one finishes (no batch-and-wait), and the HTTP attempts in flight
  never exceed ``concurrency``.
* **Rate limits.** ``rpm``: attempt slots are ``60/rpm`` s apart (plus 1 %), so no 60 s window
  holds more than ``rpm`` attempts; ``tpm``: a 60 s sliding window of
  estimated-then-actual tokens. Even without limits, attempt starts are paced
  ``min_start_gap_s`` apart (0.2 ms): a cold start does not flood the client with hundreds of
  connects at once, and replies do not come back in synchronized bursts (see
  :class:`StartPacer`).
* **One retry loop.** Exponential backoff with full jitter, ``Retry-After`` honoured, at most
  ``max_retries`` retries, then :class:`RequestFailed` with the last error.
* **One back-off for the whole client.** A ``Retry-After`` (429/503) pauses *every* attempt of
  the engine (one endpoint) until it has passed, not just the request that got it; a 429/503
  also halves the attempts allowed in flight, which then grow back by one per round of
  successes (:class:`AdaptiveGate`). ``benchmarks/bench_engine_ratelimit.py`` measures it.
* **Permanent errors stop early.** 401/403, 404 and a 400 on ``abort_after_invalid`` requests in
  a row mean every other request fails the same way: no new attempt starts, and
  :meth:`RequestEngine.run_jobs` raises :class:`~medgr2_generation.errors.PermanentError` naming the fix.
* **Cache and resume.** Successful replies are appended to a JSONL cache (flush + fsync per
  record) under the caller's key; failures are never cached. A torn last line (kill -9
  mid-write) is dropped on reload. Re-running the same work asks only for missing keys
  (``request(..., use_cache=False)`` asks again and the new reply replaces the old one).
  Secrets are redacted (:func:`medgr2_generation.errors.redact`) from everything cached or reported.
* **Graceful stop.** When ``stop`` (a :class:`threading.Event`) is set, no new job or attempt
  starts; in-flight attempts finish and are cached.

Nothing here imports an SDK: the module is part of the light core.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from medgr2.data import Ledger, stable_hash
from medgr2_generation.errors import (
    RETRYABLE_STATUS,
    FatalError,
    PermanentError,
    RequestFailed,
    RetryableError,
    Stopped,
    classify_status,
    parse_retry_after,
    permanent_kind,
    redact_data,
)
from medgr2_generation.lean_http import within
from medgr2_generation.reply_cache import OffsetIndex, Reply, ResponseCache, might_hold_secret

__all__ = [
    "RETRYABLE_STATUS",
    "AdaptiveGate",
    "EngineOptions",
    "EngineStats",
    "FatalError",
    "OffsetIndex",
    "PermanentError",
    "Reply",
    "RequestEngine",
    "RequestFailed",
    "ResponseCache",
    "RetryableError",
    "StartPacer",
    "Stopped",
    "TpmLimiter",
    "classify_status",
    "might_hold_secret",
    "parse_retry_after",
    "request_key",
    "run_sync",
]

T = TypeVar("T")
R = TypeVar("R")


class EngineOptions(BaseModel):
    """Scheduling and retry settings shared by every API backend."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(default=16, ge=1, le=4096, description="Requests in flight at most.")
    rpm: float | None = Field(
        default=None, gt=0, description="Requests per minute at most (None: unlimited)."
    )
    tpm: float | None = Field(default=None, gt=0, description="Tokens per minute at most (None: unlimited).")
    max_retries: int = Field(
        default=6, ge=0, le=100, description="Retries of a failed request before giving up."
    )
    timeout_s: float = Field(default=120.0, gt=0, description="Timeout of one HTTP attempt, in seconds.")
    backoff_base_s: float = Field(default=1.0, ge=0, description="First backoff delay; doubles per retry.")
    backoff_max_s: float = Field(default=60.0, ge=0, description="Cap on one backoff delay.")
    max_retry_after_s: float = Field(default=600.0, ge=0, description="Cap on a server's Retry-After delay.")
    min_start_gap_s: float = Field(
        default=0.0002,
        ge=0,
        le=60,
        description="Least time between two attempt starts (0: none); spreads bursts (see StartPacer).",
    )
    abort_after_invalid: int = Field(
        default=3,
        ge=1,
        description="Stop everything after this many requests in a row are refused as invalid (HTTP 400/422).",
    )
    shared_backoff: bool = Field(
        default=True,
        description="A Retry-After pauses every request and a 429 lowers concurrency (False: only the "
        "request that got it waits; for comparisons).",
    )


class StartPacer:
    """Start slots at least ``interval`` s apart, never bunched after idle time.

    Slots are scheduled from the previous *slot*, not from when a waiter happened to wake, so a
    late wake-up does not lower the long-run rate. The engine uses one pacer for both its limits:

    * ``rpm``: the interval is ``60/rpm`` s plus a 1 % margin (:meth:`for_limits`); the margin absorbs
      wake-up jitter of up to 1 % of the window (0.6 s of 60 s), so no window ever holds more than
      ``rpm`` starts;
    * ``min_start_gap_s``: a floor of about the client's own CPU cost per request. Without it,
      ``concurrency`` requests start in the same instant: the client interleaves hundreds of
      connects and request builds, so even the first request leaves late (0.3 s at C = 256 here),
      and with a steady server latency the replies keep coming back in bursts that queue behind
      each other (``benchmarks/bench_engine_throughput.py``, 4 s runs: ratio to ideal 0.79 -> 0.90
      at C = 256, 0.91 -> 0.97 at C = 64, measured with the openai SDK at about 2 ms of CPU a request and
      a 1 ms gap). The floor caps the rate at ``1/gap``. With the lean HTTP transport a request costs
      about 0.3-0.4 ms of CPU, so the default is 0.2 ms (at most 5000 starts/s): a larger gap makes
      requests wait on a timer the CPU does not need (about 0.05 ms of CPU a request at 1 ms, and C = 256
      takes 0.26 s to start its first wave), a smaller one stops spreading the first wave.
    """

    RPM_MARGIN = 1.01
    SLACK_S = 0.001

    def __init__(self, interval: float):
        self.interval = interval
        self._last = float("-inf")

    @classmethod
    def for_limits(cls, rpm: float | None, min_gap_s: float, window_s: float = 60.0) -> StartPacer | None:
        """The pacer for an ``rpm`` limit (per ``window_s``) and a minimum gap; ``None``: no pacing."""
        interval = max(min_gap_s, window_s / rpm * cls.RPM_MARGIN if rpm else 0.0)
        return cls(interval) if interval > 0 else None

    def reserve(self, now: float) -> float:
        """Reserve the next start slot (at ``now`` loop time); returns it. A slot less than :attr:`SLACK_S`
        ahead needs no wait (see :meth:`acquire`)."""
        slot = self._last = max(self._last + self.interval, now)
        return slot

    async def acquire(self, stop: threading.Event | None = None, slot: float | None = None) -> None:
        """Reserve the next start slot and wait for it (slots are handed out in call order); ``slot``: one
        :meth:`reserve` gave already."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if slot is None:
            slot = self.reserve(now)
        # a wait under a millisecond is not slept: the event loop's poll rounds it up to 1 ms anyway, so
        # it would only cost a timer (the slots stay `interval` apart, so no rpm window gains a start)
        while (wait := slot - now) > self.SLACK_S:
            if stop is not None and stop.is_set():
                raise Stopped("stopped while waiting for the rate limit")
            await asyncio.sleep(min(wait, 0.5))
            now = loop.time()


class AdaptiveGate:
    """Admits attempts: at most ``limit`` in flight, none during a shared pause.

    * :meth:`throttle` (a 429/503): pause every new attempt until ``now + retry_after`` and halve
      the limit, at most once per round (a throttle of an attempt that started before the last
      decrease does not decrease again: it reports the same congestion);
    * :meth:`success`: the limit grows by ``1/limit`` (one more slot per round of successes),
      up to ``ceiling``.
    """

    def __init__(self, ceiling: int, adaptive: bool = True):
        self.ceiling, self.adaptive = ceiling, adaptive
        self.limit = float(ceiling)
        self.active = 0
        self.pause_until = 0.0
        self.last_decrease = float("-inf")
        self.decreases = 0
        self.paused_s = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()  # first come, first served
        self._check: Callable[[], None] | None = None
        self._poll: asyncio.TimerHandle | None = None

    def paused(self, now: float) -> float:
        """Seconds left of the shared pause (0: none)."""
        return max(0.0, self.pause_until - now)

    def try_acquire(self) -> bool:
        """Take a slot now when one is free and nobody waits (what :meth:`acquire` does without waiting)."""
        if not self._waiters and self.active < max(1, int(self.limit)):
            self.active += 1
            return True
        return False

    async def acquire(self, check: Callable[[], None]) -> float:
        """Wait for a slot (``check()`` raises to give up: it is polled every 0.25 s while anyone waits);
        returns the loop time it was admitted. A freed slot is handed to the longest waiter directly."""
        loop = asyncio.get_running_loop()
        if not self._waiters and self.active < max(1, int(self.limit)):
            self.active += 1
            return loop.time()
        check()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        self._check = check
        if self._poll is None:
            self._poll = loop.call_later(0.25, self._poll_check, loop)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release_now()  # handed a slot while being cancelled: pass it on
            else:
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
            raise
        return loop.time()

    def _poll_check(self, loop: asyncio.AbstractEventLoop) -> None:
        """While anyone waits: give up every wait when ``check()`` raises (a stop, a permanent error)."""
        self._poll = None
        if not self._waiters:
            return
        try:
            if self._check is not None:
                self._check()
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter
            while self._waiters:
                fut = self._waiters.popleft()
                if not fut.done():
                    fut.set_exception(exc)
            return
        self._poll = loop.call_later(0.25, self._poll_check, loop)

    def _wake(self) -> None:
        while self._waiters and self.active < max(1, int(self.limit)):
            fut = self._waiters.popleft()
            if not fut.done():
                self.active += 1
                fut.set_result(None)

    def release_now(self) -> None:
        """Free a slot (handed to the longest waiter, if any)."""
        self.active -= 1
        if self._waiters:
            self._wake()

    async def release(self) -> None:
        self.release_now()

    def success(self) -> None:
        if self.adaptive and self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
            if self._waiters:
                self._wake()  # the limit may have grown past a whole slot

    def throttle(self, started: float, retry_after: float | None) -> None:
        """A 429/503 for an attempt admitted at ``started`` (loop time)."""
        now = asyncio.get_running_loop().time()
        if retry_after:
            end = now + retry_after
            if end > self.pause_until:
                self.paused_s += end - max(now, self.pause_until)
                self.pause_until = end
        if self.adaptive and started >= self.last_decrease:
            self.limit = max(1.0, self.limit / 2)
            self.last_decrease = now
            self.decreases += 1


class TpmLimiter:
    """A sliding 60 s window of tokens: a request waits until its estimate fits under ``tpm``."""

    def __init__(self, tpm: float, window_s: float = 60.0):
        self.tpm, self.window = tpm, window_s
        self._log: deque[list[float]] = deque()  # [time, tokens]
        self._used = 0.0
        self._lock = asyncio.Lock()

    def _expire(self, now: float) -> None:
        while self._log and self._log[0][0] <= now - self.window:
            self._used -= self._log.popleft()[1]

    async def acquire(self, tokens: float, stop: threading.Event | None = None) -> list[float]:
        """Reserve ``tokens``; returns the entry to :meth:`settle` with the actual count."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            while True:
                now = loop.time()
                self._expire(now)
                if not self._log or self._used + tokens <= self.tpm:
                    entry = [now, float(tokens)]
                    self._log.append(entry)
                    self._used += tokens
                    return entry
                if stop is not None and stop.is_set():
                    raise Stopped("stopped while waiting for the tpm limit")
                await asyncio.sleep(min(self._log[0][0] + self.window - now, 0.5) + 1e-3)

    def settle(self, entry: list[float], actual: float) -> None:
        """Replace a reservation's estimate by the tokens the reply really used."""
        if entry in self._log:
            self._used += actual - entry[1]
        entry[1] = float(actual)


@dataclass
class EngineStats:
    """Counters of one engine run (see :meth:`RequestEngine.ledger`)."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cached_output_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    max_in_flight: int = 0
    shared: int = 0
    throttled: int = 0


def request_key(**parts: Any) -> str:
    """A cache key over everything that changes a reply: backend, model, rendered prompt, image
    sha256s, generation parameters, output schema version (pass them as keyword arguments)."""
    return stable_hash(parts, length=32)


class RequestEngine:
    """Sends requests through a transport under concurrency, rate limits, retries and a cache.

    Args:
        transport: ``async payload -> Reply``; raises :class:`RetryableError` / :class:`FatalError`.
        options: scheduling and retry settings.
        cache: where successful replies persist (``None``: no cache).
        prices: USD per million tokens by model, ``{model: {"input": x, "output": y}}``.
        model: the model the prices are looked up for.
        stop: the graceful-stop event (e.g. :attr:`medgr2.interfaces.StageContext.stop`).
        seed: seeds the backoff jitter.
        window_s: the rate-limit window (60 s; benchmarks may scale it down).
        explain: ``kind -> fix`` for a :class:`~medgr2_generation.errors.PermanentError` (``"auth"``,
            ``"model"``, ``"invalid"``): what the user should change, e.g. the key's variable.
    """

    def __init__(
        self,
        transport: Callable[[Any], Awaitable[Reply]],
        options: EngineOptions | None = None,
        *,
        cache: ResponseCache | None = None,
        prices: Mapping[str, Mapping[str, float]] | None = None,
        model: str = "",
        stop: threading.Event | None = None,
        seed: int = 0,
        window_s: float = 60.0,
        explain: Callable[[str], str] | None = None,
    ):
        self.transport = transport
        self.options = options or EngineOptions()
        # a transport that times its attempts out itself (``transport.enforces_timeout = True``, at most
        # ``timeout_s``) needs no second timer per attempt
        self._own_timeout = bool(getattr(transport, "enforces_timeout", False))
        self.cache = cache
        self.prices = dict(prices or {})
        self.model = model
        self.stop = stop or threading.Event()
        self.stats = EngineStats()
        self.explain = explain
        self.aborted: PermanentError | None = None
        self._rng = random.Random(seed)
        self._window = window_s
        self._gate: AdaptiveGate | None = None
        self._pacer: StartPacer | None = None
        self._tpm: TpmLimiter | None = None
        self._in_flight = 0
        self._invalid_streak = 0
        self._pending: dict[str, asyncio.Future[Reply] | None] = {}
        self._started = time.perf_counter()

    def _bind_loop(self) -> None:
        """Create the asyncio primitives on first use (an engine serves one event loop)."""
        if self._gate is None:
            self._gate = AdaptiveGate(self.options.concurrency, adaptive=self.options.shared_backoff)
            self._pacer = StartPacer.for_limits(self.options.rpm, self.options.min_start_gap_s, self._window)
            self._tpm = TpmLimiter(self.options.tpm, self._window) if self.options.tpm else None

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number ``attempt`` (0-based)."""
        cap = min(self.options.backoff_max_s, self.options.backoff_base_s * (2**attempt))
        return self._rng.uniform(cap / 2, cap)

    def _check(self) -> None:
        """Raise when no new attempt may start (stopped, or a permanent error was seen)."""
        if self.aborted is not None:
            raise self.aborted
        if self.stop.is_set():
            raise Stopped("stopped before sending")

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._check()
            await asyncio.sleep(min(left, 0.25))

    async def _admit(self) -> float:
        """Wait for a slot, the end of any shared pause and the rate limits; returns the admit time."""
        assert self._gate is not None
        gate, pacer = self._gate, self._pacer
        loop = asyncio.get_running_loop()
        # the common case without an await: a free slot, no pause, a start slot due (the same steps as waiting)
        admitted = loop.time() if gate.try_acquire() else await gate.acquire(self._check)
        try:
            while True:
                self._check()
                if (wait := gate.paused(loop.time())) > 0:
                    await self._sleep(wait)
                    continue
                if pacer is not None:
                    now = loop.time()
                    slot = pacer.reserve(now)
                    if slot - now > pacer.SLACK_S:
                        await pacer.acquire(self.stop, slot)
                    self._check()
                if gate.paused(loop.time()) <= 0:  # a pause that began while pacing: wait it out
                    return admitted
        except BaseException:
            gate.release_now()
            raise

    def peek(self, key: str) -> Reply | None:
        """The cached reply for ``key`` without counting a hit."""
        return self.cache.get(key) if self.cache is not None else None

    def cached(self, key: str) -> Reply | None:
        """The cached reply for ``key`` (counted as a cache hit), or ``None``."""
        reply = self.peek(key)
        if reply is not None:
            self.stats.cache_hits += 1
            self.stats.cached_input_tokens += reply.input_tokens
            self.stats.cached_output_tokens += reply.output_tokens
        return reply

    async def request(
        self,
        key: str,
        build: Callable[[], Awaitable[Any]] | Any,
        est_tokens: int = 0,
        *,
        use_cache: bool = True,
    ) -> Reply:
        """The reply for ``key``: from the cache, else sent (with retries) and cached.

        ``build`` is the transport payload, or a zero-argument function making it (or an awaitable of it),
        called only on a cache miss, once (e.g. to encode images lazily). Concurrent calls with
        the same key share one request. ``use_cache=False`` sends it even when cached (the new
        reply replaces the cached one). Raises :class:`RequestFailed` when it gives up,
        :class:`Stopped` when stopped and :class:`~medgr2_generation.errors.PermanentError` when the engine
        stopped on a permanent error.
        """
        hit = self.cached(key) if use_cache else None
        if hit is not None:
            return hit
        if key in self._pending:
            self.stats.shared += 1
            shared = self._pending[key]
            if shared is None:  # the first caller made none: a future only when a second one comes
                shared = self._pending[key] = asyncio.get_running_loop().create_future()
                shared.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
            return await asyncio.shield(shared)
        self._bind_loop()
        self._pending[key] = None
        try:
            reply = await self._send(key, build, est_tokens)
        except asyncio.CancelledError:
            if (shared := self._pending.pop(key, None)) is not None:
                shared.cancel()
            raise
        except BaseException as exc:
            if (shared := self._pending.pop(key, None)) is not None:
                shared.set_exception(exc)
            raise
        if (shared := self._pending.pop(key, None)) is not None:
            shared.set_result(reply)
        return reply

    def _fatal(self, exc: FatalError, attempts: int) -> Exception:
        """The error to raise for a fatal reply: :class:`PermanentError` (and stop) or RequestFailed."""
        kind = permanent_kind(getattr(exc, "status", None), str(exc))
        if kind == "invalid":
            self._invalid_streak += 1
            if self._invalid_streak < self.options.abort_after_invalid:
                return RequestFailed(f"fatal: {exc}", attempts, final=True)
        if kind is None:
            return RequestFailed(f"fatal: {exc}", attempts, final=True)
        if self.aborted is None:
            fix = self.explain(kind) if self.explain is not None else {
                "auth": "check the API key",
                "model": "check the model name and the server URL",
                "invalid": "check the request options (model, structured output, image size)",
            }[kind]
            self.aborted = PermanentError(kind, getattr(exc, "status", None), str(exc), fix, self.stats.requests)
        return self.aborted

    async def _send(self, key: str, build: Callable[[], Awaitable[Any]] | Any, est_tokens: int) -> Reply:
        """Build the payload, then the retry loop (see :meth:`request`)."""
        if callable(build):
            payload = build()
            if inspect.isawaitable(payload):  # made asynchronously (e.g. images still to encode)
                payload = await payload
        else:
            payload = build
        opts = self.options
        attempt = 0
        while True:
            self._check()
            assert self._gate is not None
            admitted = await self._admit()
            try:
                entry = await self._tpm.acquire(est_tokens, self.stop) if self._tpm is not None else None
                self._check()
                self.stats.requests += 1
                self._in_flight += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
                try:
                    if self._own_timeout:
                        reply = await self.transport(payload)
                    else:
                        reply = await within(opts.timeout_s + 1.0, self.transport(payload))
                    error: Exception | None = None
                except RetryableError as exc:
                    error = exc
                except (asyncio.TimeoutError, TimeoutError):
                    error = RetryableError(f"timed out after {opts.timeout_s:g} s")
                except FatalError as exc:
                    self._count_error(exc)
                    self.stats.failures += 1
                    raise self._fatal(exc, attempt + 1) from exc
                finally:
                    self._in_flight -= 1
                if error is None:
                    self._invalid_streak = 0
                    self._gate.success()
                    if entry is not None and self._tpm is not None:
                        self._tpm.settle(entry, reply.input_tokens + reply.output_tokens)
                    self.stats.input_tokens += reply.input_tokens
                    self.stats.output_tokens += reply.output_tokens
            finally:
                self._gate.release_now()
            if error is None:
                if self.cache is not None:
                    # durable before the request returns, but with the slot already free: the next attempt
                    # does not wait for this one's fsync. A kill loses at most the replies waiting here (one
                    # per job in flight: run_jobs' workers)
                    reply = await self.cache.put(key, reply)  # as stored (secrets redacted)
                return reply
            self._count_error(error)
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                retry_after = min(retry_after, opts.max_retry_after_s)
            if opts.shared_backoff and getattr(error, "status", None) in (429, 503):
                self.stats.throttled += 1
                self._gate.throttle(admitted, retry_after)
            if attempt >= opts.max_retries:
                self.stats.failures += 1
                raise RequestFailed(
                    f"gave up after {attempt + 1} attempt(s): {error}", attempt + 1
                ) from error
            delay = retry_after if retry_after is not None else self.backoff(attempt)
            attempt += 1
            self.stats.retries += 1
            await self._sleep(delay)

    def _count_error(self, exc: Exception) -> None:
        status = getattr(exc, "status", None)
        name = f"http_{status}" if status else type(exc).__name__
        if "timed out" in str(exc):
            name = "timeout"
        self.stats.errors[name] = self.stats.errors.get(name, 0) + 1

    async def run_jobs(
        self,
        jobs: Iterable[T],
        fn: Callable[[T], Awaitable[R]],
        on_done: Callable[[T, R | BaseException], None],
        *,
        workers: int | None = None,
    ) -> bool:
        """Run ``fn(job)`` for every job with ``workers`` (default: ``concurrency``) in flight,
        starting the next job as soon as one finishes. ``on_done(job, result_or_exception)`` is
        called for each finished job (a :class:`Stopped` job is not reported). Returns ``True``
        when every job ran, ``False`` when the stop event cut the run short. Raises
        :class:`~medgr2_generation.errors.PermanentError` (after the attempts in flight finished and were
        cached) when a permanent error stopped the engine; jobs it cut short are not reported.
        """
        self._bind_loop()
        it = iter(jobs)
        n = workers or self.options.concurrency

        async def worker() -> None:
            while not self.stop.is_set() and self.aborted is None:
                try:
                    job = next(it)
                except StopIteration:
                    return
                try:
                    result: Any = await fn(job)
                except (Stopped, PermanentError):
                    return
                except Exception as exc:  # noqa: BLE001 - reported to the caller, never lost
                    result = exc
                if self.aborted is not None and isinstance(result, BaseException):
                    return  # a job that failed because of the abort: the abort says it
                on_done(job, result)

        await asyncio.gather(*(worker() for _ in range(n)))
        if self.aborted is not None:
            raise self.aborted.with_requests(self.stats.requests)
        return not self.stop.is_set()

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for the tokens under :attr:`prices` of :attr:`model` (0 when the model has no price)."""
        price = self.prices.get(self.model) or {}
        return (input_tokens * price.get("input", 0.0) + output_tokens * price.get("output", 0.0)) / 1e6

    def ledger(self, stage: str, *, successes: int, rejects: Mapping[str, int], **extra: Any) -> Ledger:
        """A :class:`~medgr2.data.Ledger` of this run.

        ``requests``/tokens/``cost_usd`` count what this run sent and paid for; replies served
        from the cache are in ``extra`` (``cache_hits``, ``cached_cost_usd``).
        """
        s = self.stats
        return Ledger(
            stage=stage,
            requests=s.requests,
            successes=successes,
            retries=s.retries,
            failures=s.failures,
            rejects=dict(rejects),
            input_tokens=s.input_tokens,
            output_tokens=s.output_tokens,
            cost_usd=round(self.cost(s.input_tokens, s.output_tokens), 6),
            wall_s=round(time.perf_counter() - self._started, 3),
            extra=redact_data({
                "cache_hits": s.cache_hits,
                "cached_input_tokens": s.cached_input_tokens,
                "cached_output_tokens": s.cached_output_tokens,
                "cached_cost_usd": round(self.cost(s.cached_input_tokens, s.cached_output_tokens), 6),
                "errors": dict(s.errors),
                "max_in_flight": s.max_in_flight,
                "shared_requests": s.shared,
                "throttled": s.throttled,
                "backoff": {
                    "paused_s": round(self._gate.paused_s, 3) if self._gate else 0.0,
                    "concurrency_decreases": self._gate.decreases if self._gate else 0,
                    "final_concurrency": round(self._gate.limit, 2) if self._gate else self.options.concurrency,
                },
                "model": self.model,
                **extra,
            }),
        )


def run_sync(coro: Awaitable[R]) -> R:
    """Run a coroutine to completion from sync code (in a helper thread if a loop is running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="medgr2-engine")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
