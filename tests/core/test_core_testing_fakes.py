"""medgr2.testing: the fakes satisfy the Protocols, the fixtures are fresh, the module is light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medgr2.data import RewardBreakdown, RewardInput
from medgr2.images import open_image
from medgr2.interfaces import (
    DatasetSource,
    Evaluator,
    Filter,
    Generator,
    PolicyTrainer,
    RewardModel,
    StageContext,
)
from medgr2.store import read_jsonl
from medgr2.testing import (
    FAKE_NAME,
    FakeRewardModel,
    FakeRewardOptions,
    fake_reward_term,
    make_image_ref,
    make_registry,
    make_sample,
    make_seed_item,
)

PROTOCOLS = {"dataset": DatasetSource, "generator": Generator, "reward_model": RewardModel, "filter": Filter,
             "trainer": PolicyTrainer, "evaluator": Evaluator}


@pytest.mark.parametrize("kind", sorted(PROTOCOLS))
def test_every_fake_satisfies_its_protocol(medgr2_registry, kind):
    component = medgr2_registry.create(kind, FAKE_NAME)
    assert isinstance(component, PROTOCOLS[kind])


def test_registry_fixture_holds_only_the_fakes_and_is_fresh(medgr2_registry):
    assert {e.name for e in medgr2_registry} == {FAKE_NAME}
    assert {e.plugin for e in medgr2_registry} == {"medgr2.testing"}
    medgr2_registry.registrar("generator").add("added_by_a_test", dict)
    assert "added_by_a_test" not in make_registry().names("generator")


def test_context_fixture(medgr2_context, tmp_path):
    assert isinstance(medgr2_context, StageContext)
    assert medgr2_context.work_dir == tmp_path / "work" and medgr2_context.work_dir.is_dir()
    assert medgr2_context.registry is not None and medgr2_context.cycle == 1


def test_make_registry_with_extra_plugins_and_strictness():
    from medgr2 import hookimpl
    from medgr2.plugins import PluginLoadError

    class Extra:
        @hookimpl
        def medgr2_register_filters(self, registry):
            registry.add("extra", dict)

    class Typo:
        @hookimpl
        def medgr2_register_filter(self, registry):
            """A misspelt hook."""

    registry = make_registry(Extra())
    assert registry.names("filter") == ["extra", FAKE_NAME]
    assert make_registry(Extra(), fakes=False).names("filter") == ["extra"]
    with pytest.raises(PluginLoadError, match="unknown hook"):
        make_registry(Typo())
    with pytest.raises(PluginLoadError, match="No module named"):
        make_registry("no_such_plugin_module_xyz")


def test_a_whole_fake_cycle(medgr2_registry, medgr2_context):
    """dataset → generate → score → filter → train → evaluate, all through the registry."""
    seed = medgr2_registry.create("dataset", FAKE_NAME, {"n": 9}).load()
    assert len(seed.items) == len(seed.samples) == 9
    assert {i.split for i in seed.items} == {"train", "test"}

    gen = medgr2_registry.create("generator", FAKE_NAME, {"reject_every": 3})
    result = gen.generate(seed.items, medgr2_context)
    assert len(result.samples) == 6 and len(result.rejects) == 3
    assert result.ledger.rejects == {"invalid_reply": 3}
    assert all(s.provenance.generator == FAKE_NAME and s.provenance.cycle == 1 for s in result.samples)

    rm = medgr2_registry.create("reward_model", FAKE_NAME)
    scores = rm.score([RewardInput.from_sample(s) for s in result.samples])
    assert all(-6 <= x <= 10 for x in scores)
    scored = [s.model_copy(update={"reward": RewardBreakdown(total=x, model_version=rm.version)})
              for s, x in zip(result.samples, scores)]

    decisions = medgr2_registry.create("filter", FAKE_NAME, {"tau": 0}).apply(scored, [], medgr2_context)
    assert [d.sample_id for d in decisions] == [s.id for s in scored]
    kept = [s for s, d in zip(scored, decisions) if d.keep]
    assert kept  # consistent samples (rationale names the answer) score high

    out = medgr2_context.work_dir / "policy"
    trained = medgr2_registry.create("trainer", FAKE_NAME).train(kept, medgr2_context.work_dir, out, medgr2_context)
    assert json.loads((out / "policy.json").read_text())["samples"] == [s.id for s in kept]
    assert trained.checkpoint == str(out)

    report = medgr2_registry.create("evaluator", FAKE_NAME, {"accuracy": 1.0}).evaluate(
        seed.samples, out, medgr2_context.work_dir / "eval", medgr2_context)
    assert report.overall.n == 9 and report.overall.accuracy == 1.0
    assert len(read_jsonl(medgr2_context.work_dir / "eval" / "predictions.jsonl")) == 9


def test_fake_reward_model_is_deterministic_and_batch_independent(medgr2_context, tmp_path):
    rm = FakeRewardModel(FakeRewardOptions())
    inputs = [RewardInput.from_sample(make_sample(answer=a, rationale=f"shows {r}"))
              for a, r in [("normal", "normal"), ("tumour", "normal"), ("pneumonia", "pneumonia")]]
    full = rm.score(inputs)
    assert [rm.score([x])[0] for x in inputs] == full
    assert rm.score(inputs[::-1]) == full[::-1]
    assert full[0] > 0 > full[1]  # the rationale supports the first answer only
    assert FakeRewardModel(FakeRewardOptions(salt="other")).score(inputs) != full

    rm.train([], medgr2_context)
    restored = FakeRewardModel()
    restored.load(medgr2_context.work_dir / "fake_rm")
    assert restored.version == rm.version and restored.score(inputs) == rm.score(inputs)


def test_builders():
    s = make_sample()
    assert s.answer == s.options[0] and s.images[0].loader == FAKE_NAME
    assert make_sample(reward=4.5).reward.total == 4.5
    assert make_sample(answer="tumour").answer_letter == "C"
    item = make_seed_item(1)
    assert item.labels == {"diagnosis": "pneumonia"} and item.id == "fake-1"
    assert make_image_ref("a.png").sha256 != make_image_ref("b.png").sha256


def test_fake_image_loader(medgr2_registry):
    image = open_image(make_image_ref("x.png", width=20, height=10), medgr2_registry)
    assert image.size == (20, 10)


def test_fake_reward_term_and_chat_completions():
    assert fake_reward_term([[{"role": "assistant", "content": "Pneumonia (B)"}], "no"],
                            answer=["pneumonia", "yes"]) == [1.0, 0.0]


def test_importing_the_pytest_plugin_is_light():
    code = ("import sys, json, medgr2.testing; "
            "print(json.dumps([m for m in ('torch', 'transformers', 'trl', 'datasets', 'medgr2.data', 'PIL') "
            "if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_fake_generator_handles_any_label_value(medgr2_registry, medgr2_context):
    items = [make_seed_item(0, diagnosis="Normal"), make_seed_item(1, diagnosis="rare thing")]
    result = medgr2_registry.create("generator", FAKE_NAME, {"n_options": 3}).generate(items, medgr2_context)
    assert [s.answer for s in result.samples] == ["Normal", "rare thing"]
    assert all(len(s.options) == 3 for s in result.samples)
