"""medgr2's ``generate`` against bare async clients, side by side in one run, same fake server.

The server is ``medgr2.testing.fake_servers.FakeOpenAIServer`` in its own process on 127.0.0.1 (asyncio,
listen backlog 4096, so no client meets a short accept queue), at a fixed latency or a lognormal one
with sigma = 1 whose draw is seeded by each prompt's item number, so every client meets the same
latencies in the same order. Each client runs in a fresh process (imports not timed), so its CPU
time and peak RSS are its own:

* **medgr2**: the registered ``openai`` generator's ``generate_to(items, context, sink)`` (its default
  ``transport: lean``) into the generate stage's own sink (``medgr2.stages.generate.ResultWriter``: one
  JSON line per sample or reject, into temporary files fsync'd and renamed at the end, as the stage
  streams ``samples.jsonl`` and ``rejects.jsonl``), everything included: prompt rendering (``meta_cognitive``), image encoding (once
  per image per run), the request engine, the HTTP client, reply validation, sample building, the
  fsync'd reply cache. ``--worker medgr2-sdk`` runs the same through the openai SDK (``transport: sdk``).
* **bare streams**: stdlib ``asyncio`` streams + ``asyncio.Semaphore(C)``, HTTP/1.1 keep-alive by hand
  (connections reused), the same request body (same prompt text, JSON schema and inline image, the
  image base64-encoded once per file), the reply parsed and its answer checked, one JSON line written
  per sample; no retries, no cache. Issue 23's reference was aiohttp, which is not installed here;
  this client stands in for it (aiohttp's C parser aims at the same floor).
* **bare httpx**: the same with ``httpx.AsyncClient`` (one pool of C connections) in place of the
  streams: what a straightforward client on the installed HTTP library costs.

Items are ``SeedItem``s made on demand (a lazy sequence, so the caller holds no list of N items)
over a pool of 64 small PNGs; each has its own label line, so every prompt is distinct.

1. Throughput as a share of the ideal C / mean latency, and medgr2 / bare, at C = 8 and 64
   (L = 0.5 s), C = 256 (L = 2 s) and a heavy tail (C = 64, lognormal median 0.3 s, sigma 1):
   medians over ``--repeats`` interleaved runs; "steady" leaves out each client's start-up (from its
   call to its first request at the server, read from the server's log), shown beside it.
2. Peak RSS of medgr2 and bare streams at N = 50,000 and N = 200,000 (C = 64, L = 0.05 s: CPU-bound).
3. CPU per request in steady state: the extra CPU of the larger N over the smaller (start-up drops out),
   the median of ``--cpu-repeats`` interleaved pairs of runs (1; quick: 3, since one pair of short runs on
   a shared machine varies by +-15 %).

Goals (issue 23): throughput ratio >= 1.0, CPU ratio <= 2.0, peak RSS within 20 % between the two N
and <= 250 MB. ``--quick`` (for checking; about 2 minutes on 2 cores): one repeat, n = C x 3,
N = 1,500 / 6,000 (the same 4x step) and 3 CPU pairs. The full run (3 repeats, n = C x 20, N = 50,000 / 200,000) takes
about half an hour here, most of it medgr2's 200,000 requests. ``--profile`` runs medgr2 once more
under cProfile (the thread running the event loop; CPU timer, so the profiler's own overhead inflates
pure-Python code 2-3x) and prints the top costs, cumulative and by own time.

    .venv/bin/python benchmarks/bench_engine_vs_bare.py [--quick] [--repeats 3] [--cpu-repeats 1] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

POOL = 64
CLIENTS = ("medgr2", "bare-httpx", "bare-streams")
WORKERS = (*CLIENTS, "medgr2-sdk")
DIAGNOSES = ("pneumonia", "normal", "effusion")
SIGMA = 1.0


# ---------------------------------------------------------------------------------- shared pieces
class LazyItems:
    """``n`` seed items made on access (a Sequence), over a pool of ``POOL`` images in ``root``."""

    def __init__(self, n: int, root: Path):
        from medgr2.data import ImageRef, Modality, SeedItem

        self.n, self.root = n, str(root)
        self._make = SeedItem
        self._ref, self._xray = ImageRef, Modality.XRAY

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < self.n:
            raise IndexError(i)
        img = i % POOL
        return self._make(id=f"bench-{i}", dataset="bench", modality=self._xray, split="train",
                          image=self._ref(path=f"img{img}.png", root=self.root, sha256=f"sha-{img}"),
                          labels={"diagnosis": DIAGNOSES[i % 3], "series": f"s{i}"})

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(self.n))


def make_images(root: Path) -> None:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for i in range(POOL):
        Image.new("RGB", (96, 64), ((i * 37) % 256, 80, 160)).save(root / f"img{i}.png")


def rss_now_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------------- the clients
def run_medgr2(url: str, items: LazyItems, c: int, work: Path, profile: bool, transport: str = "lean") -> dict[str, Any]:
    from medgr2.interfaces import StageContext
    from medgr2.plugins import load_registry

    registry = load_registry()
    import medgr2_datasets.loaders  # noqa: F401 - the `file` image loader and PIL's codecs, loaded before the clock
    from PIL import Image  # starts: in a run, the data stage has loaded them long before generation, and imports

    Image.init()  # are not timed for any client
    gen = registry.create("generator", "openai", {"base_url": url, "model": "fake-model", "concurrency": c,
                                                  "timeout_s": 120, "max_retries": 3, "transport": transport})
    context = StageContext(work_dir=work, registry=registry)
    rss0 = rss_now_mb()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile(time.process_time)  # CPU time (of the process) charged to this thread's calls
        prof.enable()
    from medgr2.stages.generate import ResultWriter

    t0, cpu, t = time.monotonic(), time.process_time(), time.perf_counter()
    with ResultWriter(work) as sink:  # the generate stage's sink: samples.jsonl and rejects.jsonl, one line each
        gen.generate_to(items, context, sink)
    wall, cpu, t1 = time.perf_counter() - t, time.process_time() - cpu, time.monotonic()
    if prof is not None:
        import io
        import pstats

        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(20)
        print(out.getvalue(), file=sys.stderr)
    ok = sink.samples
    if ok != len(items):
        raise SystemExit(f"medgr2: {len(items) - ok} of {len(items)} items failed: {dict(sink.reasons)}")
    return {"wall": wall, "cpu": cpu, "n": len(items), "rss0": rss0, "t0": t0, "t1": t1}


def bare_setup() -> tuple[Any, dict[str, Any]]:
    """What a hand-written client prepares once: the prompt template with its constant parts filled
    in, and the ``response_format`` (the same schema medgr2 sends)."""
    import string

    from medgr2_generation.contract import SAMPLE_SCHEMA
    from medgr2_generation.prompts import builtin

    from medgr2.data import Modality, QuestionType

    body_t = string.Template(builtin("meta_cognitive").body)
    template = string.Template(body_t.safe_substitute(
        modalities=", ".join(m.value for m in Modality),
        question_types=", ".join(q.value for q in QuestionType),
        schema=json.dumps(SAMPLE_SCHEMA, indent=1), report="", exemplars=""))
    fmt = {"type": "json_schema", "json_schema": {"name": "reply", "schema": SAMPLE_SCHEMA, "strict": False}}
    return template, fmt


def bare_body(item: Any, template: Any, fmt: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    """The request body for ``item`` (its image read and base64-encoded once per file)."""
    path = os.path.join(item.image.root, item.image.path)
    data_url = images.get(path)
    if data_url is None:
        with open(path, "rb") as f:
            data_url = images[path] = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    labels = "\n".join(f"- {k}: {v}" for k, v in sorted(item.labels.items()))
    prompt = template.substitute(dataset=item.dataset, modality=item.modality.label, labels=labels)
    content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": data_url}}]
    return {"model": "fake-model", "temperature": 0.7, "max_tokens": 1024, "response_format": fmt,
            "messages": [{"role": "user", "content": content}]}


def bare_sample(reply: dict[str, Any], item: Any) -> str:
    """The JSON line of a reply's sample (its answer checked against its options)."""
    sample = json.loads(reply["choices"][0]["message"]["content"])
    if sample["answer"] not in sample["options"]:
        raise ValueError("answer not among the options")
    return json.dumps({"id": item.id, **sample}) + "\n"


async def bounded(items: LazyItems, c: int, one: Any) -> None:
    """Run ``one(item)`` for every item with at most ``c`` in flight (semaphore taken before each task starts)."""
    sem = asyncio.Semaphore(c)

    async def guarded(item: Any) -> None:
        try:
            await one(item)
        finally:
            sem.release()

    tasks: set[asyncio.Task] = set()
    for item in items:
        await sem.acquire()
        task = asyncio.create_task(guarded(item))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*list(tasks))


async def bare_httpx(url: str, items: LazyItems, c: int, out_path: Path) -> None:
    """httpx + semaphore: the same body medgr2 sends, the reply checked, one JSON line per sample."""
    import httpx

    template, fmt = bare_setup()
    images: dict[str, str] = {}
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    with open(out_path, "w") as out:
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120,
                                     headers={"Authorization": "Bearer k"}) as client:

            async def one(item: Any) -> None:
                r = await client.post("/chat/completions", json=bare_body(item, template, fmt, images))
                r.raise_for_status()
                out.write(bare_sample(r.json(), item))

            await bounded(items, c, one)


async def bare_streams(url: str, items: LazyItems, c: int, out_path: Path) -> None:
    """asyncio streams + semaphore: HTTP/1.1 keep-alive by hand (up to C connections, reused), the
    same body, the reply checked, one JSON line per sample. What aiohttp's C parser approaches."""
    from urllib.parse import urlsplit

    template, fmt = bare_setup()
    parts = urlsplit(url)
    host, port, path = parts.hostname, parts.port, parts.path.rstrip("/") + "/chat/completions"
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "Authorization: Bearer k\r\nContent-Length: ")
    images: dict[str, str] = {}
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(body: bytes) -> dict[str, Any]:
        reader, writer = idle.pop() if idle else await asyncio.open_connection(host, port)
        writer.write(f"{head}{len(body)}\r\n\r\n".encode() + body)
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = await reader.readexactly(length)
        idle.append((reader, writer))
        if status.split(b" ", 2)[1] != b"200":
            raise RuntimeError(f"HTTP {status!r}")
        return json.loads(data)

    with open(out_path, "w") as out:

        async def one(item: Any) -> None:
            reply = await post(json.dumps(bare_body(item, template, fmt, images)).encode())
            out.write(bare_sample(reply, item))

        await bounded(items, c, one)
    for _, writer in idle:
        writer.close()


def run_bare(url: str, items: LazyItems, c: int, work: Path, kind: str) -> dict[str, Any]:
    import httpx  # noqa: F401 - imported before the clock starts
    import medgr2_generation.prompts  # noqa: F401

    work.mkdir(parents=True, exist_ok=True)
    out = work / "samples.jsonl"
    client = bare_httpx if kind == "httpx" else bare_streams
    rss0 = rss_now_mb()
    t0, cpu, t = time.monotonic(), time.process_time(), time.perf_counter()
    asyncio.run(client(url, items, c, out))
    wall, cpu, t1 = time.perf_counter() - t, time.process_time() - cpu, time.monotonic()
    with open(out) as f:
        written = sum(1 for _ in f)
    if written != len(items):
        raise SystemExit(f"bare: {len(items) - written} of {len(items)} requests failed")
    return {"wall": wall, "cpu": cpu, "n": len(items), "rss0": rss0, "t0": t0, "t1": t1}


def worker(args: argparse.Namespace) -> None:
    import warnings

    warnings.simplefilter("ignore")
    items = LazyItems(args.n, Path(args.images))
    with tempfile.TemporaryDirectory(prefix="bench-vs-bare-") as tmp:
        if args.worker.startswith("medgr2"):
            res = run_medgr2(args.url, items, args.c, Path(tmp), args.profile,
                             "sdk" if args.worker == "medgr2-sdk" else "lean")
        else:
            res = run_bare(args.url, items, args.c, Path(tmp), args.worker.split("-")[1])
    res["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(res), flush=True)


def serve(args: argparse.Namespace) -> None:
    """The fake server; with ``--median`` each prompt's latency is a lognormal draw seeded by its
    ``series`` label, so every client meets the same latencies in the same order."""
    import random
    import re

    from medgr2.testing.fake_servers import FakeOpenAIServer

    series = re.compile(r"^- series: s(\d+)$", re.MULTILINE)
    mu = math.log(args.median) if args.median else 0.0

    class KeyedLatencyServer(FakeOpenAIServer):
        async def handle(self, ex: Any, body: dict[str, Any]) -> None:
            # handle() reaches self._latency() before its first await: no other request runs in between
            self._prompt = self.extract(body)[0]
            await super().handle(ex, body)

        def _latency(self) -> float:
            if not args.median:
                return args.latency
            m = series.search(self._prompt)
            return random.Random(int(m[1]) if m else 0).lognormvariate(mu, SIGMA)

    server = KeyedLatencyServer(seed=1).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


# ---------------------------------------------------------------------------------- the driver
@contextlib.contextmanager
def server(latency: float = 0.0, median: float = 0.0) -> Iterator[str]:
    cmd = [sys.executable, __file__, "--serve", "--latency", str(latency), "--median", str(median)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def measure(client: str, url: str, n: int, c: int, images: Path, profile: bool = False,
            arrivals: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", client, "--url", url, "--n", str(n), "--c", str(c),
           "--images", str(images)] + (["--profile"] if profile else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{client} worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    if profile:
        print(proc.stderr, file=sys.stderr)
    res = json.loads(lines[-1][len("RESULT "):])
    if arrivals:  # start-up: from the client's call to the first request reaching the server
        import urllib.request

        with urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/_fake/log") as r:
            times = [t for t in json.loads(r.read())["times"] if res["t0"] <= t <= res["t1"]]
        res["startup"] = min(times) - res["t0"]
    return res


def side_by_side(url: str, n: int, c: int, images: Path, repeats: int) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in CLIENTS}
    for r in range(repeats):
        for client in CLIENTS[::-1] if r % 2 == 0 else CLIENTS:  # interleaved; neither always first
            runs[client].append(measure(client, url, n, c, images, arrivals=True))
    return runs


def med(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def throughput_table(images: Path, waves: int, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Table 1; returns each client's whole-run CPU ms per request at C = 64, L = 0.5 s, and the
    medgr2 / bare streams throughput ratio of each row."""
    scenarios = [("C=8, L=0.5 s", 8, 0.5, 0.0), ("C=64, L=0.5 s", 64, 0.5, 0.0),
                 ("C=256, L=2 s", 256, 2.0, 0.0), ("C=64, lognormal sigma=1", 64, 0.0, 0.3)]
    print(f"1. throughput as a share of ideal (C / mean latency), medians of {repeats} interleaved run(s), "
          f"n = C x {waves}; ratio = medgr2 / bare; 'steady' leaves out each client's start-up (its call to "
          "its first request at the server)")
    print(f"{'scenario':24} {'n':>5} {'ideal/s':>7} | {'medgr2':>6} {'streams':>7} {'httpx':>6} | "
          f"{'ratio':>5} {'steady':>6} {'vs httpx':>8} | "
          f"start-up s: {'medgr2':>6} {'streams':>7} {'httpx':>6}")
    rows, cpu_at_64, ratios = [], {}, {}
    for label, c, lat, median in scenarios:
        n = c * waves
        mean = lat or median * math.exp(SIGMA**2 / 2)
        with server(lat, median) as url:
            runs = side_by_side(url, n, c, images, repeats)
        ideal = c / mean
        share = {k: statistics.median(n / run["wall"] for run in v) / ideal for k, v in runs.items()}
        steady = {k: statistics.median(n / (run["t1"] - run["t0"] - run["startup"]) for run in v)
                  for k, v in runs.items()}
        up = {k: med(v, "startup") for k, v in runs.items()}
        cpu = {k: 1000 * med(v, "cpu") / n for k, v in runs.items()}
        rows.append((label, cpu))
        if c == 64 and lat:
            cpu_at_64 = cpu
        m, st, hx = share["medgr2"], share["bare-streams"], share["bare-httpx"]
        ratios[label] = m / st
        print(f"{label:24} {n:>5} {ideal:>7.1f} | {m:>6.3f} {st:>7.3f} {hx:>6.3f} | {m / st:>5.3f} "
              f"{steady['medgr2'] / steady['bare-streams']:>6.3f} {m / hx:>8.3f} | {'':11} "
              f"{up['medgr2']:>6.2f} {up['bare-streams']:>7.2f} {up['bare-httpx']:>6.2f}")
    print("goal: ratio >= 1.0 at every row (issue 23's reference is a bare aiohttp client, not installed "
          "here; the stdlib streams client stands in for it)")
    print("\nwhole-run CPU ms per request (start-up included): " + "; ".join(
        f"{label}: medgr2 {cpu['medgr2']:.2f}, streams {cpu['bare-streams']:.2f}, "
        f"httpx {cpu['bare-httpx']:.2f}"
        for label, cpu in rows))
    return cpu_at_64, ratios


def memory_table(images: Path, mem_n: list[int], cpu_repeats: int = 1) -> dict[str, float]:
    """Table 2 (peak RSS at two N) and the steady CPU per request between them: ``cpu_repeats`` interleaved
    pairs of runs (the first pair gives the RSS table), medians of the steady CPU."""
    print("\n2. peak RSS (MB) at C=64, L=0.05 s (CPU-bound; RSS after imports in brackets; "
          "items made lazily)")
    print(f"{'N':>8} | {'medgr2 MB':>15} {'req/s':>6} | {'streams MB':>15} {'req/s':>6}")
    clients = ("medgr2", "bare-streams")
    pairs: list[dict[str, list[dict[str, Any]]]] = []
    with server(0.05) as url:
        for r in range(cpu_repeats):
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
            for n in mem_n:
                for client in clients if r % 2 == 0 else clients[::-1]:
                    runs[client].append(measure(client, url, n, 64, images))
                if r == 0:
                    m, b = runs["medgr2"][-1], runs["bare-streams"][-1]
                    print(f"{n:>8} | {m['rss_peak']:>7.0f} ({m['rss0']:>5.0f}) {n / m['wall']:>6.0f} | "
                          f"{b['rss_peak']:>7.0f} ({b['rss0']:>5.0f}) {n / b['wall']:>6.0f}")
            pairs.append(runs)
    peaks = [r["rss_peak"] for r in pairs[0]["medgr2"]]
    print(f"medgr2 peak RSS {peaks[0]:.0f} -> {peaks[1]:.0f} MB from N={mem_n[0]:,} to N={mem_n[1]:,}: "
          f"{100 * (peaks[1] / peaks[0] - 1):+.0f} % (goal < 20 % and <= 250 MB)")
    each = {c: [1000 * (p[c][1]["cpu"] - p[c][0]["cpu"]) / (mem_n[1] - mem_n[0]) for p in pairs] for c in clients}
    steady = {c: statistics.median(v) for c, v in each.items()}
    print(f"\n3. CPU per request, steady state (the extra CPU of N={mem_n[1]:,} over N={mem_n[0]:,}, "
          f"so start-up drops out; median of {cpu_repeats} interleaved pair(s): medgr2 "
          f"{', '.join(f'{x:.3f}' for x in each['medgr2'])}; bare streams "
          f"{', '.join(f'{x:.3f}' for x in each['bare-streams'])} ms): medgr2 {steady['medgr2']:.2f} ms, "
          f"bare streams {steady['bare-streams']:.2f} ms: "
          f"ratio {steady['medgr2'] / steady['bare-streams']:.1f} (goal <= 2.0)")
    return {"peak_small": peaks[0], "peak_large": peaks[1], "cpu_ratio": steady["medgr2"] / steady["bare-streams"],
            "cpu_medgr2": steady["medgr2"], "cpu_bare": steady["bare-streams"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one repeat, short runs, N = 1,500 / 6,000")
    p.add_argument("--repeats", type=int, default=None, help="interleaved runs per row (default 3; quick 1)")
    p.add_argument("--waves", type=int, default=None, help="requests per slot: n = C x waves (20; quick 3)")
    p.add_argument("--memory-n", type=int, nargs=2, default=None, help="the two N of the RSS table")
    p.add_argument("--skip-memory", action="store_true", help="leave out the RSS table")
    p.add_argument("--cpu-repeats", type=int, default=None,
                   help="interleaved pairs of runs at the two N for the steady CPU (default 1; quick 3)")
    p.add_argument("--profile", action="store_true", help="profile one medgr2 run and print the top costs")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    p.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--median", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--c", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--images", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        return serve(args)
    if args.worker:
        return worker(args)
    repeats = args.repeats or (1 if args.quick else 3)
    waves = args.waves or (3 if args.quick else 20)
    mem_n = args.memory_n or ([1_500, 6_000] if args.quick else [50_000, 200_000])
    started = time.perf_counter()
    images = Path(tempfile.mkdtemp(prefix="bench-vs-bare-img-"))
    make_images(images)
    print(f"medgr2 generate vs bare clients (stdlib asyncio streams; httpx), each + asyncio.Semaphore(C); "
          f"fake OpenAI server in its own process; each client run in a fresh process; "
          f"{os.cpu_count()} CPUs\n")
    cpu, ratios = throughput_table(images, waves, repeats)
    print(f"CPU per request ratio at C=64, L=0.5 s (whole run): medgr2 / streams "
          f"{cpu['medgr2'] / cpu['bare-streams']:.1f}, medgr2 / httpx {cpu['medgr2'] / cpu['bare-httpx']:.2f}"
          " (goal <= 2.0)")
    cpu_repeats = args.cpu_repeats or (3 if args.quick else 1)
    mem = None if args.skip_memory else memory_table(images, mem_n, cpu_repeats)
    sizes = "" if mem is None else f", N = {mem_n[0]:,} / {mem_n[1]:,}"
    print(f"\nsummary (issue 23's goals; {repeats} repeat(s), n = C x {waves}{sizes}):")
    for label, ratio in ratios.items():
        print(f"  throughput medgr2 / bare, {label:24} {ratio:6.3f}  (goal >= 1.0)")
    if mem is not None:
        print(f"  CPU per request medgr2 / bare (steady)      {mem['cpu_ratio']:6.2f}  (goal <= 2.0; median of "
              f"{cpu_repeats} pair(s), "
              f"{mem['cpu_medgr2']:.3f} vs {mem['cpu_bare']:.3f} ms)")
        grow = 100 * (mem["peak_large"] / mem["peak_small"] - 1)
        print(f"  medgr2 peak RSS at N={mem_n[0]:,} / {mem_n[1]:,}: {mem['peak_small']:.0f} / {mem['peak_large']:.0f} MB, "
              f"{grow:+.0f} % (goal < 20 % and <= 250 MB)")
    if args.profile:
        print("\nprofile of one medgr2 run (C=64, L=0.05 s, N=2,000; cProfile on the event-loop thread): "
              "stderr")
        with server(0.05) as url:
            measure("medgr2", url, 2_000, 64, images, profile=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
