"""Kill -9 the generating process at random points, re-run: nothing lost, nothing duplicated,
at most one extra request per job in flight (``concurrency`` plus a quarter, at least 2: a reply waiting
for the cache's fsync no longer holds its request slot) per kill, and the same final set as an
uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from medgr2.testing.fake_servers import FakeOpenAIServer

WORKER = Path(__file__).with_name("gen_kill_worker.py")
N, C = 40, 4
JOBS = C + max(2, C // 4)  # ApiGenerator._workers(): replies a kill can lose (in flight or waiting for the disk)


def start(server, work_dir: Path, image_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), server.base_url, str(work_dir), str(image_dir), str(N), str(C)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def cached_keys(work_dir: Path) -> list[str]:
    path = work_dir / "requests.jsonl"
    if not path.exists():
        return []
    keys = []
    for line in path.read_text().splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except ValueError:
            pass  # a torn last line
    return keys


def final_set(work_dir: Path) -> list[tuple]:
    out = []
    for line in (work_dir / "samples.jsonl").read_text().splitlines():
        s = json.loads(line)
        prov = {k: v for k, v in s["provenance"].items() if k != "created_at"}
        out.append(
            (
                s["id"],
                s["question"],
                tuple(s["options"]),
                s["answer"],
                s["rationale"],
                json.dumps(prov, sort_keys=True),
            )
        )
    return out


def test_kill_minus_9_and_resume(tmp_path):
    rng = random.Random(7)
    images = tmp_path / "images"
    with FakeOpenAIServer(latency=lambda r: r.uniform(0.05, 0.15), seed=3) as server:
        # the reference: one uninterrupted run
        ref_dir = tmp_path / "reference"
        proc = start(server, ref_dir, images)
        assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:]
        reference = final_set(ref_dir)
        assert len(reference) == N and server.attempts == N

        work = tmp_path / "killed"
        kills = 0
        for _ in range(3):
            before_attempts, before_keys = server.attempts, len(cached_keys(work))
            if before_keys >= N - C:
                break
            proc = start(server, work, images)
            target = before_attempts + rng.randint(1, N - before_keys - C)
            deadline = time.monotonic() + 60
            while server.attempts < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.1))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
            keys = cached_keys(work)
            sent, kept = server.attempts - before_attempts, len(keys) - before_keys
            assert len(keys) == len(set(keys)), "a reply was cached twice"
            assert sent - kept <= JOBS, f"kill {kills}: {sent} requests sent but only {kept} kept"
            assert not (work / "samples.jsonl").exists() or kills > 1
        assert kills >= 2

        before_attempts, before_keys = server.attempts, len(cached_keys(work))
        proc = start(server, work, images)
        assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:]
        # the last run asked only for what was missing
        assert server.attempts - before_attempts == N - before_keys
        assert server.attempts - N <= N + JOBS * kills  # all killed runs + the final one, vs the reference's N

    result = final_set(work)
    assert len(result) == N and len({r[0] for r in result}) == N
    assert sorted(result) == sorted(reference)
    keys = cached_keys(work)
    assert len(keys) == len(set(keys)) == N
    ledger = json.loads((work / "ledger.json").read_text())
    assert ledger["successes"] == N and ledger["extra"]["cache_hits"] == before_keys


def test_sigterm_stops_gracefully_keeping_finished_work(tmp_path):
    images, work = tmp_path / "images", tmp_path / "work"
    with FakeOpenAIServer(latency=0.2) as server:
        proc = start(server, work, images)
        deadline = time.monotonic() + 60
        while server.attempts < 6 and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()[-2000:]
        sent = server.attempts
        ledger = json.loads((work / "ledger.json").read_text())
        samples = final_set(work)
        assert ledger["extra"]["completed"] is False
        # every request that was sent finished and was kept: in flight ones were not abandoned
        assert len(samples) == len(cached_keys(work)) == sent < N
        proc = start(server, work, images)
        assert proc.wait(timeout=60) == 0
        assert server.attempts == N
    assert len(final_set(work)) == N
