"""The request engine with in-process transports: scheduling, limits, retries, cache, stop."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from medgr2_generation.engine import (
    EngineOptions,
    FatalError,
    Reply,
    RequestEngine,
    RequestFailed,
    ResponseCache,
    RetryableError,
    classify_status,
    parse_retry_after,
    request_key,
)


class ScriptedTransport:
    """Fails the first ``faults[payload]`` attempts of each payload, sleeping ``latency(payload)``."""

    def __init__(self, faults=None, latency=lambda p: 0.0, retry_after=None, fatal=()):
        self.faults, self.latency, self.retry_after, self.fatal = (
            faults or {},
            latency,
            retry_after,
            set(fatal),
        )
        self.attempts: dict = {}
        self.times: list[float] = []
        self.in_flight = self.max_in_flight = 0

    async def __call__(self, payload):
        self.attempts[payload] = self.attempts.get(payload, 0) + 1
        self.times.append(time.monotonic())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency(payload))
        finally:
            self.in_flight -= 1
        if payload in self.fatal:
            raise FatalError("bad request")
        if self.attempts[payload] <= self.faults.get(payload, 0):
            raise RetryableError("HTTP 503", retry_after=self.retry_after, status=503)
        return Reply(text=f"reply {payload}", input_tokens=10, output_tokens=5)


def run_all(engine, payloads):
    results = {}

    async def job(p):
        return await engine.request(request_key(p=p), p)

    async def main():
        await engine.run_jobs(payloads, job, lambda p, r: results.__setitem__(p, r))

    asyncio.run(main())
    return results


def fast(**kw):
    return EngineOptions(backoff_base_s=0.001, backoff_max_s=0.01, **kw)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_k_faults_give_exactly_k_plus_1_attempts(k):
    transport = ScriptedTransport(faults={"a": k, "b": 0})
    engine = RequestEngine(transport, fast(max_retries=5))
    results = run_all(engine, ["a", "b"])
    assert transport.attempts == {"a": k + 1, "b": 1}
    assert results["a"].text == "reply a"
    assert engine.stats.retries == k and engine.stats.requests == k + 2


def test_gives_up_after_max_retries_with_the_error_recorded():
    transport = ScriptedTransport(faults={"a": 99})
    engine = RequestEngine(transport, fast(max_retries=2))
    results = run_all(engine, ["a"])
    assert isinstance(results["a"], RequestFailed)
    assert "gave up after 3 attempt(s)" in str(results["a"]) and "503" in str(results["a"])
    assert transport.attempts["a"] == 3 and engine.stats.failures == 1
    assert engine.stats.errors == {"http_503": 3}


def test_fatal_errors_are_not_retried():
    transport = ScriptedTransport(fatal={"a"})
    engine = RequestEngine(transport, fast(max_retries=5))
    results = run_all(engine, ["a"])
    assert isinstance(results["a"], RequestFailed) and transport.attempts["a"] == 1


def test_retry_after_is_honoured():
    transport = ScriptedTransport(faults={"a": 1}, retry_after=0.4)
    engine = RequestEngine(transport, fast(max_retries=3))
    run_all(engine, ["a"])
    gap = transport.times[1] - transport.times[0]
    assert 0.4 <= gap < 0.7


def test_timeouts_are_retried():
    transport = ScriptedTransport(latency=lambda p: 5.0 if transport.attempts[p] == 1 else 0.0)
    engine = RequestEngine(transport, EngineOptions(timeout_s=0.05, backoff_base_s=0.001, max_retries=2))
    engine_timeout = engine.options.timeout_s + 1.0  # the engine's own guard sits above the SDK timeout
    t = time.monotonic()
    results = run_all(engine, ["a"])
    assert results["a"].text == "reply a" and transport.attempts["a"] == 2
    assert time.monotonic() - t < engine_timeout + 1.0
    assert engine.stats.errors == {"timeout": 1}


def test_continuous_scheduling_keeps_concurrency_busy():
    """One slow request must not hold the others back (batch-and-wait would take 4 x 0.5 s)."""
    slow = {"p0", "p4", "p8", "p12"}
    transport = ScriptedTransport(latency=lambda p: 0.5 if p in slow else 0.02)
    engine = RequestEngine(transport, EngineOptions(concurrency=4))
    t = time.monotonic()
    run_all(engine, [f"p{i}" for i in range(16)])
    elapsed = time.monotonic() - t
    assert transport.max_in_flight == 4
    assert elapsed < 1.0, elapsed


def test_rpm_spacing_never_exceeds_the_limit_in_any_window():
    transport = ScriptedTransport()
    # A 1 s window stands in for 60 s: rpm=20 means 20 per window, starts >= 50 ms apart.
    engine = RequestEngine(transport, EngineOptions(concurrency=8, rpm=20), window_s=1.0)
    run_all(engine, [f"p{i}" for i in range(30)])
    times = transport.times
    assert (times[-1] - times[0]) / (len(times) - 1) >= 0.05  # the long-run rate stays under the limit
    assert max(sum(1 for u in times if t <= u < t + 1.0) for t in times) <= 20


@pytest.mark.parametrize("gap", [0.0, 0.02])
def test_attempt_starts_are_paced_min_start_gap_apart(gap):
    """All ``concurrency`` slots free at once still start ``min_start_gap_s`` apart (0: together)."""
    transport = ScriptedTransport(latency=lambda p: 0.05)
    engine = RequestEngine(transport, EngineOptions(concurrency=16, min_start_gap_s=gap))
    run_all(engine, [f"p{i}" for i in range(16)])
    t0 = transport.times[0]
    if gap:  # start k is never before slot k (a late wake-up does not push the later slots back)
        assert all(t - t0 >= k * gap - 0.002 for k, t in enumerate(transport.times))
    else:
        assert transport.times[-1] - transport.times[0] < 0.02


def test_tpm_limits_tokens_per_window():
    transport = ScriptedTransport()
    engine = RequestEngine(transport, EngineOptions(concurrency=8, tpm=45), window_s=0.5)
    t = time.monotonic()
    results = {}

    async def main():
        async def job(p):
            return await engine.request(request_key(p=p), p, est_tokens=15)

        await engine.run_jobs([f"p{i}" for i in range(6)], job, lambda p, r: results.__setitem__(p, r))

    asyncio.run(main())
    # 15 tokens each, 45 per 0.5 s window: 3 per window -> the 6th starts after one window.
    assert time.monotonic() - t >= 0.5
    assert len(results) == 6


def test_cache_serves_hits_and_never_caches_failures(tmp_path):
    path = tmp_path / "cache.jsonl"
    transport = ScriptedTransport(faults={"bad": 99})
    engine = RequestEngine(transport, fast(max_retries=1), cache=ResponseCache(path))
    run_all(engine, ["a", "bad"])
    engine.cache.close()
    keys = [json.loads(line)["key"] for line in path.read_text().splitlines()]
    assert keys == [request_key(p="a")]
    transport2 = ScriptedTransport()
    engine2 = RequestEngine(transport2, fast(), cache=ResponseCache(path))
    results = run_all(engine2, ["a", "bad"])
    assert transport2.attempts == {"bad": 1}
    assert results["a"].text == "reply a" and engine2.stats.cache_hits == 1


def test_cache_ignores_a_torn_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = ResponseCache(path)
    cache.add("k1", Reply(text="one"))
    cache.close()
    with open(path, "a") as f:
        f.write('{"key": "k2", "reply": {"te')
    cache = ResponseCache(path)
    assert cache.get("k1").text == "one" and cache.get("k2") is None
    cache.add("k3", Reply(text="three"))
    cache.close()
    assert set(ResponseCache(path).entries) == {"k1", "k3"}


def test_stop_event_stops_new_work_and_keeps_finished():
    stop = threading.Event()
    transport = ScriptedTransport(latency=lambda p: 0.05)
    engine = RequestEngine(transport, EngineOptions(concurrency=2), stop=stop)
    results = {}

    async def main():
        async def job(p):
            if p == "p3":
                stop.set()
            return await engine.request(request_key(p=p), p)

        return await engine.run_jobs(
            [f"p{i}" for i in range(20)], job, lambda p, r: results.__setitem__(p, r)
        )

    finished = asyncio.run(main())
    assert finished is False
    assert 2 <= len(results) <= 4 and "p19" not in results
    assert all(isinstance(r, Reply) for r in results.values())


def test_retry_after_parsing_and_status_classes():
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    for status in (408, 429, 500, 503):
        assert isinstance(classify_status(status, "x"), RetryableError)
    for status in (400, 401, 403, 404):
        assert isinstance(classify_status(status, "x"), FatalError)
    assert classify_status(429, "x", "3").retry_after == 3.0


def test_ledger_counts_tokens_and_cost():
    transport = ScriptedTransport(faults={"a": 1})
    engine = RequestEngine(transport, fast(), prices={"m": {"input": 1.0, "output": 2.0}}, model="m")
    run_all(engine, ["a", "b"])
    ledger = engine.ledger("generate", successes=2, rejects={"x": 1})
    assert (ledger.requests, ledger.retries, ledger.input_tokens, ledger.output_tokens) == (3, 1, 20, 10)
    assert ledger.cost_usd == pytest.approx((20 * 1.0 + 10 * 2.0) / 1e6)
    assert ledger.rejects == {"x": 1}


def test_concurrent_identical_requests_share_one_attempt():
    transport = ScriptedTransport(latency=lambda p: 0.05)
    engine = RequestEngine(transport, EngineOptions(concurrency=4))
    results = []

    async def main():
        async def job(i):
            return await engine.request(request_key(p="same"), "same")

        await engine.run_jobs(range(4), job, lambda i, r: results.append(r))

    asyncio.run(main())
    assert transport.attempts == {"same": 1} and engine.stats.shared == 3
    assert [r.text for r in results] == ["reply same"] * 4
