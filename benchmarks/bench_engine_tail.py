"""Continuous scheduling vs batch-and-gather under heavy-tailed latency, side by side.

Latency is lognormal with median ``--median`` s and p99 = 10x the median (the fake server in its
own process draws it per request). Both runs send ``--n`` distinct requests through the same
``RequestEngine`` + openai SDK transport at equal concurrency: *continuous* keeps C requests in
flight (``run_jobs``), *batch-and-gather* sends C, waits for all of them, then the next C.
Goal: continuous >= 1.5x the throughput of batch-and-gather.

Run: ``.venv/bin/python benchmarks/bench_engine_tail.py [--n 480] [--concurrency 32] [--median 0.1]``
"""

from __future__ import annotations

import argparse
import asyncio
import warnings

from bench_engine_common import fake_server, openai_engine, run_batched, run_continuous


async def compare(url: str, n: int, c: int) -> tuple[float, float]:
    gen, make = openai_engine(url, concurrency=c)
    async with gen.open_transport() as transport:
        continuous = await run_continuous(make(transport), gen, n, "continuous")
        batched = await run_batched(make(transport), gen, n, c, "batched")
    return continuous, batched


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=480, help="Requests per run.")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--median", type=float, default=0.1, help="Median latency in seconds.")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with fake_server("--lognormal-median", str(args.median), "--seed", "1") as url:
        continuous, batched = asyncio.run(compare(url, args.n, args.concurrency))
    print(
        f"lognormal latency: median {args.median:g} s, p99 {10 * args.median:g} s; C={args.concurrency}, "
        f"n={args.n}"
    )
    print(f"continuous       {continuous:7.2f} s  {args.n / continuous:7.1f} req/s")
    print(f"batch-and-gather {batched:7.2f} s  {args.n / batched:7.1f} req/s")
    print(f"speed-up continuous / batch: {batched / continuous:.2f}x (goal >= 1.5x)")


if __name__ == "__main__":
    main()
