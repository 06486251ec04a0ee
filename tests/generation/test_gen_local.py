"""The ``local`` backend: a tiny transformers VLM built offline (medgr2_hf.tiny)."""

from __future__ import annotations

import json

import pytest

from medgr2.data import Reject
from medgr2_generation.engine import Reply
from medgr2.testing.fake_servers import default_reply
from medgr2.interfaces import StageContext

TEMPLATE = "# strategy: short\n# version: 1\n---\nQ about $modality:\n$labels\n"


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    tiny = pytest.importorskip("medgr2_hf.tiny", reason="the training engineer's tiny VLM builder is absent")
    return tiny.build_tiny_vlm("qwen2_5_vl", tmp_path_factory.mktemp("tiny") / "vlm", seed=0)


def local(registry, tmp_path, model_path, **kw):
    (tmp_path / "short.txt").write_text(TEMPLATE)
    opts = {
        "model_path": str(model_path),
        "template_path": str(tmp_path / "short.txt"),
        "max_output_tokens": 16,
        "batch_size": 2,
        **kw,
    }
    return registry.create("generator", "local", opts)


def test_tiny_vlm_runs_batched_and_every_item_is_accounted_for(
    tiny_vlm, gen_registry, items_factory, tmp_path
):
    items = items_factory(3)
    gen = local(gen_registry, tmp_path, tiny_vlm)
    context = StageContext(work_dir=tmp_path / "work", registry=gen_registry)
    result = gen.generate(items, context)
    # an untrained model writes no valid JSON: every item is a reject with a reason, after one re-ask
    assert len(result.samples) + len(result.rejects) == 3
    assert all(r.reason and r.detail.startswith("after one re-ask") for r in result.rejects)
    assert result.ledger.requests == 3 + len(result.rejects) and result.ledger.output_tokens > 0
    again = gen.generate(items, context)
    assert again.ledger.requests == 0 and again.ledger.extra["cache_hits"] == result.ledger.requests
    assert again.rejects == result.rejects


def test_local_contract_and_resume_with_a_scripted_model(gen_registry, items_factory, tmp_path, monkeypatch):
    """The same contract as the API backends, with the model call scripted (no weights needed)."""
    from medgr2_generation.local import LocalGenerator

    calls = []

    def run_batch(self, prompts, images):
        calls.append(len(prompts))
        out = []
        for p in prompts:
            data = default_reply(p)
            if "normal" in p and not p.startswith("Your previous reply"):
                data["answer"] = "not an option"  # re-asked once, then valid
            if "effusion" in p:
                data["options"] = [data["answer"]]  # invalid twice -> reject
            out.append(Reply(text=json.dumps(data), input_tokens=5, output_tokens=7))
        return out

    monkeypatch.setattr(LocalGenerator, "_run_batch", run_batch)
    monkeypatch.setattr(LocalGenerator, "model_id", lambda self: "scripted")
    monkeypatch.setattr(LocalGenerator, "_image", lambda self, ref, context: None)
    items = items_factory(6)  # diagnoses cycle pneumonia, normal, effusion
    gen = local(gen_registry, tmp_path, tmp_path / "no-model", batch_size=4)
    context = StageContext(work_dir=tmp_path / "work", registry=gen_registry, cycle=1)
    result = gen.generate(items, context)
    assert [s.provenance.source_id for s in result.samples] == ["demo-0", "demo-1", "demo-3", "demo-4"]
    assert {r.id: r.reason for r in result.rejects} == {"demo-2": "option_count", "demo-5": "option_count"}
    assert calls == [4, 2, 4]  # 6 prompts in batches of 4, then 4 re-asks
    assert all(
        s.provenance.generator == "local" and s.provenance.prompt_strategy == "short" for s in result.samples
    )
    assert result.ledger.rejects == {"option_count": 2}
    assert gen.generate(items, context).samples == result.samples and calls == [4, 2, 4]
    out = gen.complete_json(
        [("rate it", [items[0].image])], {"type": "object", "required": ["score"]}, context
    )
    assert isinstance(out[0], Reject) and out[0].reason == "schema"


def test_local_stops_between_batches_and_resumes(gen_registry, items_factory, tmp_path, monkeypatch):
    from medgr2_generation.local import LocalGenerator

    context = StageContext(work_dir=tmp_path / "work", registry=gen_registry)
    calls = []

    def run_batch(self, prompts, images):
        calls.append(len(prompts))
        context.stop.set()  # as if SIGINT arrived during the first batch
        return [Reply(text=json.dumps(default_reply(p))) for p in prompts]

    monkeypatch.setattr(LocalGenerator, "_run_batch", run_batch)
    monkeypatch.setattr(LocalGenerator, "model_id", lambda self: "scripted")
    monkeypatch.setattr(LocalGenerator, "_image", lambda self, ref, context: None)
    items = items_factory(5)
    gen = local(gen_registry, tmp_path, tmp_path / "no-model", batch_size=2)
    first = gen.generate(items, context)
    assert calls == [2] and len(first.samples) == 2 and first.ledger.extra["completed"] is False
    context.stop.clear()
    monkeypatch.setattr(
        LocalGenerator,
        "_run_batch",
        lambda self, prompts, images: [Reply(text=json.dumps(default_reply(p))) for p in prompts],
    )
    second = gen.generate(items, context)
    assert len(second.samples) == 5 and second.ledger.extra["completed"] is True
    assert second.ledger.extra["cache_hits"] == 2 and second.ledger.requests == 3
