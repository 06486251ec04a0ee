"""The generate stage streams a generator that offers ``generate_to``: each result is written as it comes,
none is held (counted objects, not timings), the files are the ones a collecting run writes, and a failed
or killed run leaves the old files and no temporary ones."""

from __future__ import annotations

import gc
import json
import weakref
from datetime import datetime, timezone

import pytest

from medgr2.artifacts import GENERATION_LEDGER, REJECTS, SAMPLES
from medgr2.data import ImageRef, Ledger, Modality, Provenance, Reject, SeedItem, VQASample
from medgr2.interfaces import StageContext
from medgr2.stages.generate import JsonlRecords, ResultWriter, generate
from medgr2.store import write_jsonl
from medgr2.testing.fake_servers import FakeOpenAIServer

WHEN = datetime(2026, 12, 6, tzinfo=timezone.utc)


def _items(n: int) -> list[SeedItem]:
    return [SeedItem(id=f"s-{i}", dataset="demo", modality=Modality.XRAY, split="train",
                     image=ImageRef(path=f"img{i}.png", root="/nowhere", sha256=f"sha-{i}")) for i in range(n)]


def _result(item: SeedItem, i: int) -> VQASample | Reject:
    if i % 10 == 3:
        return Reject(stage="generate", id=item.id, reason="malformed_json", detail=f"reply {i}")
    return VQASample(images=(item.image,), question=f"Which finding, {i}?", options=("effusion", "normal"),
                     answer="normal", rationale="clear lungs", provenance=Provenance(source_id=item.id, created_at=WHEN))


class Streamer:
    """A generator that only streams: ``generate`` fails the test. It counts the samples alive at each step."""

    def __init__(self, fail_at: int | None = None):
        self.alive = 0  # samples made and not yet freed (a weakref callback counts each one down)
        self.peak = 0
        self.fail_at = fail_at

    def generate(self, items, context):
        raise AssertionError("the stage collected the results (generate) instead of streaming them (generate_to)")

    def generate_to(self, items, context, sink):
        for i, item in enumerate(items):
            if i == self.fail_at:
                raise RuntimeError("the backend broke")
            result = _result(item, i)
            if isinstance(result, VQASample):
                self.alive += 1
                weakref.finalize(result, self._freed)
            sink(result)
            del result
            self.peak = max(self.peak, self.alive)
        return Ledger(stage="generate", successes=sum(i % 10 != 3 for i in range(len(items))))

    def _freed(self) -> None:
        self.alive -= 1


def test_the_stage_streams_writes_what_a_collecting_run_writes_and_holds_no_sample(tmp_path):
    n = 300
    items = _items(n)
    gen = Streamer()
    context = StageContext(work_dir=tmp_path / "gen")
    result = generate(gen, items, context)
    assert gen.peak <= 1  # each sample written and dropped before the next (a collecting stage: n)
    assert gen.alive == 0  # and the result holds none: it reads them back from the files
    expected = [_result(item, i) for i, item in enumerate(items)]
    samples = [r for r in expected if isinstance(r, VQASample)]
    rejects = [r for r in expected if isinstance(r, Reject)]
    write_jsonl(tmp_path / "ref-samples.jsonl", samples)
    write_jsonl(tmp_path / "ref-rejects.jsonl", rejects)
    assert (context.work_dir / SAMPLES).read_bytes() == (tmp_path / "ref-samples.jsonl").read_bytes()
    assert (context.work_dir / REJECTS).read_bytes() == (tmp_path / "ref-rejects.jsonl").read_bytes()
    assert isinstance(result.samples, JsonlRecords) and len(result.samples) == len(samples) == 270
    assert len(result.rejects) == 30 and result.rejects == tuple(rejects) and list(result.samples) == samples
    assert result.samples[0] == samples[0] and result.samples[-1] == samples[-1] and result.samples[5:7] == tuple(samples[5:7])
    with pytest.raises(IndexError):
        result.samples[270]
    ledger = json.loads((context.work_dir / GENERATION_LEDGER).read_text())
    assert ledger["successes"] == 270 and ledger["extra"]["completed"] is True
    assert result.ledger.extra["completed"] is True
    assert not list(context.work_dir.glob(".*.tmp"))


def test_a_failed_streamed_run_keeps_the_old_files_and_leaves_no_temporary(tmp_path):
    context = StageContext(work_dir=tmp_path / "gen")
    generate(Streamer(), _items(20), context)
    before = (context.work_dir / SAMPLES).read_bytes(), (context.work_dir / REJECTS).read_bytes()
    (context.work_dir / f".{SAMPLES}.killedrun.tmp").write_text('{"torn": ')  # what a kill -9 leaves
    with pytest.raises(RuntimeError, match="broke"):
        generate(Streamer(fail_at=10), _items(30), context)
    assert ((context.work_dir / SAMPLES).read_bytes(), (context.work_dir / REJECTS).read_bytes()) == before
    assert not list(context.work_dir.glob(".*.tmp"))


def test_the_sink_refuses_what_is_neither_a_sample_nor_a_reject(tmp_path):
    with ResultWriter(tmp_path) as writer, pytest.raises(TypeError, match="VQASample or Reject"):
        writer({"question": "not a record"})


def test_the_openai_generator_is_streamed_with_a_bounded_window(gen_registry, items_factory, tmp_path):
    """The real API generator through the stage: at most about a window of jobs' samples alive at any time
    (counted with gc), the same files as its collecting ``generate`` writes from the same replies."""
    n, c = 48, 4
    items = items_factory(n)
    cache = tmp_path / "replies.jsonl"
    with FakeOpenAIServer(latency=0.01) as server:
        opts = {"base_url": server.base_url, "concurrency": c, "strategy": "direct", "cache_path": str(cache)}
        gen = gen_registry.create("generator", "openai", opts)
        peaks: list[int] = []
        stream = gen.generate_to

        def alive() -> int:
            return sum(type(o) is VQASample for o in gc.get_objects())

        gc.collect()
        before = alive()  # samples other tests of the session still hold

        def counted(items_, context_, sink):
            def sink_counting(result):
                if len(peaks) % 4 == 0:
                    peaks.append(alive() - before)
                else:
                    peaks.append(-1)
                sink(result)

            return stream(items_, context_, sink_counting)

        gen.generate_to = counted  # type: ignore[method-assign]
        result = generate(gen, items, StageContext(work_dir=tmp_path / "streamed", registry=gen_registry))
        assert len(peaks) == n  # every result went through the stage's sink
        assert 0 < max(peaks) <= 2 * (c + 2) + 2, max(peaks)  # a window of jobs, not n
        assert len(result.samples) == n and server.attempts == n
        collected = gen_registry.create("generator", "openai", opts).generate(
            items, StageContext(work_dir=tmp_path / "collected", registry=gen_registry))
        assert server.attempts == n  # the second run read the same replies from the cache
    lines = (tmp_path / "streamed" / SAMPLES).read_text().splitlines()
    assert lines == [s.model_dump_json() for s in collected.samples]
    assert list(result.samples) == list(collected.samples)
