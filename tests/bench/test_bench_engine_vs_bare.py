"""The client benchmark compares like with like: every client completes its requests and sends the
server the same prompts (the bare clients render medgr2's template exactly), with an image each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medgr2.testing.fake_servers import FakeOpenAIServer, default_reply

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_engine_vs_bare.py"
sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from bench_engine_vs_bare import make_images

    root = tmp_path_factory.mktemp("images")
    make_images(root)
    return root


def run_worker(client: str, url: str, n: int, images: Path) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--worker", client, "--url", url, "--n", str(n),
                           "--c", "4", "--images", str(images)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


def test_every_client_sends_the_same_prompts_and_completes(images):
    prompts: dict[str, list[str]] = {}
    current: list[str] = []

    def reply(prompt: str) -> str:
        current.append(prompt)
        return json.dumps(default_reply(prompt))

    n = 7
    with FakeOpenAIServer(latency=0.01, reply=reply) as server:
        for client in ("medgr2", "bare-streams", "bare-httpx"):
            current.clear()
            before = server.bodies["images"]
            res = run_worker(client, server.base_url, n, images)
            assert res["n"] == n and res["wall"] > 0 and res["cpu"] > 0 and res["rss_peak"] >= res["rss0"] > 0
            assert res["t0"] < res["t1"]
            assert server.bodies["images"] - before == n, client  # one inline image per request
            prompts[client] = sorted(current)
    assert len(set(prompts["medgr2"])) == n  # every prompt distinct (no cache or key sharing)
    assert prompts["bare-streams"] == prompts["medgr2"] == prompts["bare-httpx"]
    assert all("- series: s" in p and "- diagnosis: " in p for p in prompts["medgr2"])


def test_lazy_items_are_a_sequence_over_the_image_pool(images):
    from bench_engine_vs_bare import POOL, LazyItems

    items = LazyItems(POOL + 2, images)
    assert len(items) == POOL + 2 and len(list(items)) == POOL + 2
    first, again = items[0], items[POOL]
    assert first.image.path == again.image.path and first.id != again.id
    assert first.labels["series"] != again.labels["series"]
    with pytest.raises(IndexError):
        items[POOL + 2]
