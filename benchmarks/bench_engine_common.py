"""Shared pieces of the request-engine benchmarks: a fake server in its own process and an engine
driving the real openai SDK transport (so the client's figures are the client's alone)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def fake_server(*args: str) -> Iterator[str]:
    """Start ``python -m medgr2.testing.fake_servers ARGS`` in a subprocess; yield its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "medgr2.testing.fake_servers", *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def server_log(base_url: str) -> dict[str, Any]:
    """Arrival times and peak concurrency recorded by the fake server."""
    root = base_url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(root + "/_fake/log") as r:
        return json.loads(r.read())


def openai_engine(base_url: str, *, concurrency: int, rpm: float | None = None, window_s: float = 60.0):
    """(open_transport context, engine factory) using the ``openai`` generator's SDK transport."""
    from medgr2_generation.openai_backend import OpenAIGenerator
    from medgr2_generation.options import OpenAIOptions

    from medgr2_generation.engine import EngineOptions, RequestEngine

    gen = OpenAIGenerator(
        OpenAIOptions(
            base_url=base_url,
            model="fake-model",
            structured_output=False,
            timeout_s=60,
            concurrency=concurrency,
        )
    )

    def make(transport):
        return RequestEngine(
            transport,
            EngineOptions(concurrency=concurrency, rpm=rpm, timeout_s=60, max_retries=3, backoff_base_s=0.05),
            window_s=window_s,
        )

    return gen, make


async def run_continuous(engine: Any, gen: Any, n: int, tag: str) -> float:
    """Send ``n`` distinct prompts with continuous scheduling; returns elapsed seconds."""
    from medgr2_generation.engine import request_key

    t = time.perf_counter()

    async def job(i: int) -> Any:
        prompt = f"{tag} request {i}\n- diagnosis: d{i}"
        return await engine.request(request_key(p=prompt), gen.payload(prompt, [], None))

    errors = []
    await engine.run_jobs(range(n), job, lambda i, r: errors.append(r) if isinstance(r, Exception) else None)
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return time.perf_counter() - t


async def run_batched(engine: Any, gen: Any, n: int, batch: int, tag: str) -> float:
    """Send ``n`` prompts batch-and-gather: ``batch`` at a time, waiting for the whole batch."""
    from medgr2_generation.engine import request_key

    t = time.perf_counter()
    for start in range(0, n, batch):
        prompts = [f"{tag} request {i}\n- diagnosis: d{i}" for i in range(start, min(n, start + batch))]
        await asyncio.gather(*(engine.request(request_key(p=p), gen.payload(p, [], None)) for p in prompts))
    return time.perf_counter() - t
