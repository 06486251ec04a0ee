"""Request-engine throughput against a fake OpenAI-compatible server at a fixed latency.

1. Concurrency C = 1, 8, 64, 256 at latency L = 1 s: achieved requests/s as a ratio to the ideal
   min(C/L, rpm/60) (no rpm limit here). Goal: >= 0.9 at every C.
2. An rpm limit below C/L: the achieved rate must be within 5 % of the limit and never above it
   in any window. The window is scaled down from 60 s to ``--window`` seconds (the engine's
   ``window_s``; the limit per window is the same number), so the run takes seconds, not minutes.

The server runs in its own process (``python -m medgr2.testing.fake_servers``); the client is the real
``openai`` backend transport (openai SDK, async, ``max_retries=0``) through ``RequestEngine``.
Client CPU per request is reported from the client process's CPU time. A second table runs the
engine alone (an in-process transport with the same latency) to separate scheduling from the
cost of the HTTP client: on a CPU-starved machine the SDK's ~2-3 ms of CPU per request, not the
scheduler, is what caps high concurrency.

The engine paces attempt starts ``min_start_gap_s`` apart (1 ms), so the first C requests go out
over C ms: a one-off ramp that a real run (thousands of requests) does not notice. ``--waves``
sets the run length (n = C x waves, default 10 s of ideal time); ``--waves 4`` shows the ramp.

Run: ``.venv/bin/python benchmarks/bench_engine_throughput.py [--waves 10] [--window 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
import warnings

from bench_engine_common import fake_server, openai_engine, run_continuous, server_log


async def throughput(base_url: str, c: int, waves: int) -> tuple[float, float, int]:
    gen, make = openai_engine(base_url, concurrency=c)
    n = max(c * waves, waves)
    async with gen.open_transport() as transport:
        engine = make(transport)
        cpu = time.process_time()
        elapsed = await run_continuous(engine, gen, n, f"c{c}")
        cpu = time.process_time() - cpu
    return n / elapsed, cpu / n * 1000, engine.stats.max_in_flight


async def engine_only(c: int, waves: int, latency: float) -> float:
    """Requests/s of the engine alone: an in-process transport that sleeps ``latency`` s."""
    from medgr2_generation.engine import EngineOptions, Reply, RequestEngine, request_key

    async def transport(payload: str) -> Reply:
        await asyncio.sleep(latency)
        return Reply(text="{}")

    engine = RequestEngine(transport, EngineOptions(concurrency=c))
    n = c * waves
    t = time.perf_counter()
    await engine.run_jobs(range(n), lambda i: engine.request(request_key(i=i), str(i)), lambda i, r: None)
    return n / (time.perf_counter() - t)


async def rpm_limited(
    base_url: str, c: int, per_window: int, window: float, n: int
) -> tuple[float, int, float]:
    gen, make = openai_engine(base_url, concurrency=c, rpm=per_window, window_s=window)
    async with gen.open_transport() as transport:
        engine = make(transport)
        await run_continuous(engine, gen, n, "rpm")
    times = sorted(server_log(base_url)["times"])[-n:]
    rate = (len(times) - 1) / (times[-1] - times[0])
    worst = max(sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times))
    return rate, worst, per_window / window


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--waves", type=int, default=10, help="Requests per concurrency slot (n = C x waves)."
    )
    parser.add_argument("--window", type=float, default=5.0, help="Rate-limit window standing in for 60 s.")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 64, 256])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    latency = 1.0
    print(
        f"fixed latency {latency:g} s, {args.waves} requests per slot, openai SDK client, "
        "server in a subprocess"
    )
    print(f"{'C':>5} {'req/s':>8} {'ideal':>7} {'ratio':>6} {'cpu ms/req':>10} {'max in flight':>13}")
    with fake_server("--latency", str(latency)) as url:
        for c in args.concurrency:
            rate, cpu_ms, peak = asyncio.run(throughput(url, c, args.waves))
            ideal = c / latency
            print(f"{c:>5} {rate:>8.2f} {ideal:>7.1f} {rate / ideal:>6.3f} {cpu_ms:>10.2f} {peak:>13}")
    print("\nthe engine alone (in-process transport, same latency): what scheduling achieves without HTTP")
    print(f"{'C':>5} {'req/s':>8} {'ideal':>7} {'ratio':>6}")
    for c in args.concurrency:
        rate = asyncio.run(engine_only(c, args.waves, latency))
        print(f"{c:>5} {rate:>8.2f} {c / latency:>7.1f} {rate * latency / c:>6.3f}")
    c, per_window = 64, 100
    n = per_window * 3
    print(
        f"\nrpm limit below C/L: C={c}, L={latency:g} s (C/L = {c / latency:g}/s), limit {per_window} per "
        f"{args.window:g} s window (= {per_window * 60 / args.window:g} rpm scaled), {n} requests"
    )
    with fake_server("--latency", str(latency)) as url:
        rate, worst, limit = asyncio.run(rpm_limited(url, c, per_window, args.window, n))
    print(
        f"achieved {rate:.3f}/s vs limit {limit:.3f}/s: ratio {rate / limit:.4f} (goal 0.95-1.0); "
        f"max in any {args.window:g} s window at the server: {worst} (limit {per_window})"
    )


if __name__ == "__main__":
    main()
