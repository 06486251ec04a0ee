"""Client CPU per request and peak RSS of the request engine for many requests.

The SDK client alone costs ~1.6 ms of CPU per request (bench_engine_throughput.py), so to see the
engine's own cost this benchmark drives ``RequestEngine`` with an in-process transport (an
``asyncio.sleep`` of ``--latency`` s returning a ~600-character reply), through everything the
engine does per request: cache key of a ~2 KB prompt, concurrency semaphore, retry loop, JSONL
cache append with flush + fsync on the writer thread, ledger counters, and continuous scheduling
over ``--n`` jobs at C = ``--concurrency``. CPU is the process's user+sys time divided by the
requests; RSS is the peak resident set of the process (Python and medgr2 imports included).
Goals: <= 2 ms CPU per request and <= 500 MB peak RSS for 50k requests at C = 64.
It runs twice, side by side: with the engine's default start pacing (``min_start_gap_s`` = 0.2 ms,
which caps this fast transport at 5000 requests/s and costs timer wake-ups in bursts) and
with pacing off.
The SDK's own cost per request is measured against a real server in bench_engine_throughput.py.

Run: ``.venv/bin/python benchmarks/bench_engine_cpu.py [--n 50000] [--concurrency 64] [--no-fsync]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

from medgr2_generation.engine import EngineOptions, Reply, RequestEngine, ResponseCache, request_key

REPLY = json.dumps(
    {
        "question": "What is the diagnosis shown in this image?",
        "options": ["pneumonia", "normal", "effusion", "fracture"],
        "answer": "pneumonia",
        "rationale": "Patchy consolidation in the right lower lobe with air bronchograms " * 4,
        "modality": "xray",
        "question_type": "disease_diagnosis",
    }
)
PROMPT = "You are a medical imaging expert writing a multiple-choice question. " * 30


async def run(
    n: int, c: int, latency: float, cache_path: Path, fsync: bool, gap: float
) -> tuple[float, float, int]:
    async def transport(payload: str) -> Reply:
        await asyncio.sleep(latency)
        return Reply(text=REPLY, input_tokens=len(payload) // 4, output_tokens=len(REPLY) // 4)

    cache = ResponseCache(cache_path, fsync=fsync)
    engine = RequestEngine(transport, EngineOptions(concurrency=c, min_start_gap_s=gap), cache=cache)
    done = []

    async def job(i: int) -> Reply:
        prompt = f"{PROMPT}\n- item: {i}"
        return await engine.request(request_key(backend="bench", prompt=prompt, images=[f"sha{i}"]), prompt)

    cpu, wall = time.process_time(), time.perf_counter()
    await engine.run_jobs(range(n), job, lambda i, r: done.append(isinstance(r, Reply)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    cache.close()
    assert sum(done) == n, "some requests failed"
    return cpu, wall, engine.stats.max_in_flight


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.005, help="In-process transport latency (s).")
    parser.add_argument("--no-fsync", action="store_true", help="Skip the per-record fsync of the cache.")
    args = parser.parse_args()
    print(
        f"{args.n} requests, C={args.concurrency}, in-process transport latency {args.latency * 1000:g} ms, "
        f"cache fsync {'off' if args.no_fsync else 'on'}"
    )
    print(f"{'min_start_gap_s':>16} {'wall s':>7} {'req/s':>6} {'max in flight':>13} {'CPU ms/req':>10}")
    for gap in (EngineOptions().min_start_gap_s, 0.0):
        with tempfile.TemporaryDirectory() as tmp:
            cpu, wall, peak = asyncio.run(
                run(args.n, args.concurrency, args.latency, Path(tmp) / "cache.jsonl", not args.no_fsync, gap)
            )
        print(f"{gap:>16g} {wall:>7.1f} {args.n / wall:>6.0f} {peak:>13} {cpu / args.n * 1000:>10.3f}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("goal: <= 2 ms CPU per request")
    print(f"peak RSS over both runs: {rss_mb:.0f} MB (goal <= 500 MB)")


if __name__ == "__main__":
    main()
