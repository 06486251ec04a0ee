"""One back-off for the whole client: per-request retries vs the shared pause + adaptive concurrency.

The fake OpenAI server runs in its own process on 127.0.0.1 and logs every attempt (arrival,
answer, fault, Retry-After, attempts open at the server). Each scenario runs the same
``RequestEngine`` + openai SDK transport twice, ``shared_backoff=False`` (only the request that got
the 429 waits: the behaviour before issue 19) and ``shared_backoff=True`` (now), and prints them side
by side:

* **window**: 3 % of attempts get a 429 with ``Retry-After: 1.5``. For each 429: attempts that
  *arrived* at the server inside its window (answer time, answer time + 1.5 s), against the
  attempts that were open at the server when it was sent (the requests already in flight).
  Goal: inside-window arrivals <= requests already in flight, for every 429.
* **quota**: the server accepts ``--quota`` requests/s (token bucket of 5) and answers 429 with the
  fractional time until the next token; the client (C = 32, no rpm) does not know the quota.
  Goal: successes/s >= 0.7 x quota, and the share of 429s.
* **misconfigured rpm**: the client's rpm is 25 % above the real quota, so ~20 % of attempts are
  429s without back-off. Goal: successes/s >= 0.7 x quota.

Run: ``.venv/bin/python benchmarks/bench_engine_ratelimit.py [--quota 100] [--n 600]`` (about 45 s).

Measured here (2 shared CPU cores, 2026-12-06), before -> shared:

* window: 429s with a 1.5 s Retry-After saw median 179 (max 347) arrivals inside their window,
  13 of 13 windows above the requests in flight -> median 0 (max 9), 0 of 9 windows over;
* quota 100/s: 96.8 -> 92.6 successes/s (0.97 -> 0.93 of the quota), 429 share 80.3 % -> 9.9 %,
  attempts per success 5.07 -> 1.11;
* rpm 1.25 x quota (18.7 % 429s before): 0.99 -> 0.97 of the quota, 429 share 18.7 % -> 4.0 %.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import warnings
from typing import Any

from bench_engine_common import fake_server, server_log

LATENCY = 0.05


async def drive(url: str, n: int, *, shared: bool, concurrency: int, rpm: float | None, tag: str) -> dict:
    from medgr2_generation.openai_backend import OpenAIGenerator
    from medgr2_generation.options import OpenAIOptions

    from medgr2_generation.engine import EngineOptions, RequestEngine, request_key

    gen = OpenAIGenerator(OpenAIOptions(base_url=url, model="fake-model", structured_output=False, timeout_s=60,
                                        concurrency=concurrency))
    opts = EngineOptions(concurrency=concurrency, rpm=rpm, timeout_s=60, max_retries=50, backoff_base_s=0.05,
                         backoff_max_s=1.0, shared_backoff=shared)
    failed: list[Any] = []
    async with gen.open_transport() as transport:
        engine = RequestEngine(transport, opts)

        async def job(i: int) -> Any:
            prompt = f"{tag} request {i}\n- diagnosis: d{i}"
            return await engine.request(request_key(p=prompt), gen.payload(prompt, [], None))

        t = time.perf_counter()
        await engine.run_jobs(range(n), job, lambda i, r: failed.append(r) if isinstance(r, Exception) else None)
        elapsed = time.perf_counter() - t
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, e.g. {failed[0]}")
    return {"elapsed": elapsed, "ok_per_s": n / elapsed, "engine": engine}


def run(server_args: list[str], n: int, **kw: Any) -> tuple[dict, list[list[Any]]]:
    with fake_server("--latency", str(LATENCY), *server_args) as url:
        out = asyncio.run(drive(url, n, **kw))
        attempts = server_log(url)["attempts"]
    return out, attempts


def windows(attempts: list[list[Any]]) -> list[tuple[int, int]]:
    """(arrivals inside the window, attempts open when the 429 was sent) per Retry-After 429."""
    out = []
    for t, done, fault, ra, open_ in attempts:
        if fault == "429" and ra:
            out.append((sum(1 for a in attempts if done < a[0] < done + ra), open_))
    return out


def scenario_window(n: int) -> bool:
    print(f"\n== window: 3 % of attempts get 429 + Retry-After 1.5 s; C=32, latency {LATENCY} s, n={n}")
    print(f"{'':8} {'429s':>5} {'in-window arrivals: median':>27} {'max':>5} {'in flight: median':>18} "
          f"{'windows over':>13} {'wall':>7}")
    ok = True
    for shared in (False, True):
        res, attempts = run(["--rate-429", "0.03", "--retry-after", "1.5", "--seed", "3"], n, shared=shared,
                            concurrency=32, rpm=None, tag=f"w{shared}")
        w = windows(attempts)
        over = sum(1 for inside, open_ in w if inside > open_)
        name = "shared" if shared else "before"
        print(f"{name:8} {len(w):5d} {statistics.median(x for x, _ in w):27.0f} {max(x for x, _ in w):5d} "
              f"{statistics.median(o for _, o in w):18.0f} {over:13d} {res['elapsed']:6.1f}s")
        if shared:
            ok = over == 0
    print(f"goal: every window's arrivals <= requests already in flight: {'met' if ok else 'NOT met'}")
    return ok


def scenario_quota(n: int, quota: float, *, rpm: float | None, title: str) -> bool:
    print(f"\n== {title}")
    print(f"{'':8} {'ok/s':>7} {'/ quota':>8} {'429 share':>10} {'attempts/ok':>12} {'final C':>8} "
          f"{'C cuts':>7} {'wall':>7}")
    ok = True
    for shared in (False, True):
        res, attempts = run(["--quota-rps", str(quota), "--quota-burst", "5"], n, shared=shared, concurrency=32,
                            rpm=rpm, tag=f"q{shared}{rpm}")
        share = sum(1 for a in attempts if a[2] == "quota") / len(attempts)
        ratio = res["ok_per_s"] / quota
        back = res["engine"].ledger("bench", successes=n, rejects={}).extra["backoff"]
        name = "shared" if shared else "before"
        print(f"{name:8} {res['ok_per_s']:7.1f} {ratio:8.2f} {share:10.1%} {len(attempts) / n:12.2f} "
              f"{back['final_concurrency']:8} {back['concurrency_decreases']:7d} {res['elapsed']:6.1f}s")
        if shared:
            ok = ratio >= 0.7
    print(f"goal: successes/s >= 0.7 x quota with the shared back-off: {'met' if ok else 'NOT met'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=600, help="Requests per quota run.")
    parser.add_argument("--n-window", type=int, default=400, help="Requests per window run.")
    parser.add_argument("--quota", type=float, default=100.0, help="Requests/s the quota server accepts.")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    t = time.perf_counter()
    results = [
        scenario_window(args.n_window),
        scenario_quota(args.n, args.quota, rpm=None,
                       title=f"quota: server accepts {args.quota:g} req/s (bucket 5), client C=32 without rpm, n={args.n}"),
        scenario_quota(args.n, args.quota, rpm=args.quota * 60 * 1.25,
                       title=f"misconfigured rpm: client rpm = 1.25 x quota ({args.quota * 1.25:g}/s), C=32, n={args.n}"),
    ]
    print(f"\nall goals met: {all(results)} ({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
