"""Issue 19, loop rows: a stage is complete only when its work is.

* SIGINT / SIGTERM during generate inside ``medgr2 run``: the run exits 130 / 143, generate is recorded as
  partial (never complete), no training stage ran, and ``--resume`` requests exactly the missing items;
* a trainer that took 0 optimizer steps, or nothing to train on, fails the run with the reason;
* a retrained R_φ that lost its calibration, or one retrained on too few examples, is not promoted: the
  gate's decision is in ``gate.json``, the cycle ledger and the report's warnings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from medgr2 import hookimpl
from medgr2.config import load_config
from medgr2.data import GradedExample, TrainResult
from medgr2.testing.fake_servers import FakeOpenAIServer
from medgr2.loop import Loop
from medgr2.plugins import load_registry
from medgr2.progress import SilentReporter
from medgr2.stages import StageFailed
from medgr2.stages.reward import update_reward_model
from medgr2.store import read_json, read_jsonl, write_json
from medgr2.testing import FakeRewardModel, FakeTrainer, fake_config_data, make_context, make_registry, make_sample

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0, "model": "fake-model"}


def _config(tmp_path: Path, base_url: str, **extra) -> Path:
    cfg = {
        "name": "r", "runs_dir": str(tmp_path / "runs"), "cycles": 1,
        "data": {"sources": [{"name": "fake", "options": {"n": 22}}]},  # 15 train items, 7 test
        "generation": {"generator": {"name": "openai", "options": {
            "strategy": "direct", "base_url": base_url, "concurrency": 1, **FAST}}},
        "reward": {"model": {"name": "fake"}, "grade_set": {"name": "fake"}, "labelling": "fake",
                   "calibrator": "fake", "min_retrain_examples": 1,
                   "warn_below_spearman": -1},  # the fake R_φ scores at random: no calibration to warn about
        "filters": {"steps": [{"name": "fake", "options": {"tau": -6}}]},
        "policy": {"sft": {"name": "fake"}, "grpo": None, "tiny_arch": "fake"},
        "evaluation": {"evaluator": {"name": "fake"}, "question_builder": {"name": "fake"}, "scorer": "fake"},
        **extra,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-key", "MEDGR2_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.Popen([sys.executable, "-c", "from medgr2.cli import main; main()", "--plugin",
                             "medgr2.testing", "--plugin", "medgr2_generation.plugin", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_generate_stops_the_run_and_resume_finishes_it(tmp_path, sig, code):
    with FakeOpenAIServer(latency=0.25) as server:
        config = _config(tmp_path, server.base_url)
        proc = _start(["run", str(config), "-q"])
        deadline = time.monotonic() + 60
        while server.attempts < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        sent_before = server.attempts
    assert proc.returncode == code, err[-3000:]
    assert "--resume" in err
    run = tmp_path / "runs" / "r"
    stages = read_json(run / "manifest.json")["stages"]
    record = stages["cycle-001/generate"]
    assert record["partial"] is True
    assert not any(k.startswith("cycle-001/") and k != "cycle-001/generate" for k in stages)  # no training ran
    items = len(read_jsonl(run / "cycle-000" / "seed" / "items.jsonl"))
    train = [i for i in read_jsonl(run / "cycle-000" / "seed" / "items.jsonl") if i["split"] == "train"]
    assert items == 22 and len(train) == 15
    done = len(read_jsonl(run / "cycle-001" / "generate" / "samples.jsonl"))
    assert 4 <= done == sent_before < 15 and record["outputs"]["samples"] == done

    with FakeOpenAIServer() as server:
        config = _config(tmp_path, server.base_url)
        proc = _start(["run", str(config), "-q", "--resume"])
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        assert server.attempts == 15 - done  # exactly the missing items
    stages = read_json(run / "manifest.json")["stages"]
    assert "partial" not in stages["cycle-001/generate"] and stages["cycle-001/generate"]["outputs"]["samples"] == 15
    assert "cycle-001/sft" in stages


class ZeroStepTrainer(FakeTrainer):
    def train(self, samples, model_path, output_dir, context) -> TrainResult:
        result = super().train(samples, model_path, output_dir, context)
        return result.model_copy(update={"metrics": {**result.metrics, "optimizer_steps": 0.0}})


class ZeroStepPlugin:
    @hookimpl
    def medgr2_register_trainers(self, registry):
        registry.add("zero", ZeroStepTrainer, config="medgr2.testing:FakeTrainerOptions")


def _fake_loop(tmp_path: Path, **overrides) -> Loop:
    registry = make_registry(ZeroStepPlugin())
    data = {"name": "f", "runs_dir": str(tmp_path / "runs"), "cycles": 1,
            "data": {"sources": [{"name": "fake"}]}, "generation": {"generator": {"name": "fake"}},
            "reward": {"model": {"name": "fake"}, "grade_set": {"name": "fake"}, "labelling": "fake",
                       "calibrator": "fake", "min_retrain_examples": 4,
                       "warn_below_spearman": -1},  # the fake R_φ scores at random
            "filters": {"steps": [{"name": "fake", "options": {"tau": -6}}]},
            "policy": {"sft": {"name": "fake"}, "grpo": None, "tiny_arch": "fake"},
            "evaluation": {"evaluator": {"name": "fake"}, "question_builder": {"name": "fake"}, "scorer": "fake"}}
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        data[section][field] = value
    return Loop(load_config(data=data, registry=registry), registry, SilentReporter())


def test_a_trainer_that_took_no_step_fails_the_run(tmp_path):
    loop = _fake_loop(tmp_path, **{"policy.sft": {"name": "zero"}})
    with pytest.raises(StageFailed, match="0 optimizer steps"):
        loop.run()
    assert "cycle-001/sft" not in loop.store.manifest()["stages"]


def test_nothing_to_train_on_fails_the_run_naming_the_funnel(tmp_path):
    loop = _fake_loop(tmp_path, **{"filters.steps": [{"name": "fake", "options": {"tau": 10}}]})
    with pytest.raises(StageFailed, match="no samples to train on.*funnel.json"):
        loop.run()
    assert any("kept no sample" in w for w in loop.warnings)


class CollapsingRM(FakeRewardModel):
    """Retrained on few examples, it scores everything 10.0 (the row of the issue)."""

    def score(self, inputs, context=None):
        return [10.0] * len(inputs) if self.trained_on else super().score(inputs, context)


def _graded(n: int, targets=(10.0, -6.0)) -> list[GradedExample]:
    return [GradedExample(question=f"q{i}", answer="a" if i % 2 == 0 else "b", rationale="a" if i % 2 == 0 else "",
                          target=targets[i % 2], grade=1 if i % 2 == 0 else 4, group_id=f"g{i}") for i in range(n)]


def _reward_config(registry, **reward):
    data = fake_config_data()
    data["reward"].update(reward)
    return load_config(data=data, registry=registry)


def _rm_v0(tmp_path: Path) -> Path:
    folder = tmp_path / "rm-v0"
    rm = CollapsingRM()
    rm.save(folder)
    held = _graded(20)
    scores = rm.score(held)
    pairs = [(a, b) for a in range(20) for b in range(20) if held[a].target > held[b].target]
    acc = sum(1.0 if scores[a] > scores[b] else 0.5 if scores[a] == scores[b] else 0.0 for a, b in pairs) / len(pairs)
    write_json(folder / "calibration.json", {"pairwise_accuracy": acc, "spearman": 0.9, "mse": 1.0})
    return folder


def test_a_retrained_rm_that_lost_its_calibration_is_not_promoted(tmp_path):
    registry = make_registry()
    cfg = _reward_config(registry, min_retrain_examples=2)
    v0 = _rm_v0(tmp_path)
    before = read_json(v0 / "calibration.json")["pairwise_accuracy"]
    assert before > 0.9
    rm = CollapsingRM()
    rm.load(v0)
    ctx = make_context(tmp_path / "update", registry, cycle=1)
    # 1 labelled sample + 1 replay example: the "R_φ retrained on 2 examples"
    outcome = update_reward_model(cfg, rm, v0, tmp_path, [make_sample()], _graded(1), _graded(20), ctx)
    assert (outcome.labelled, outcome.replay) == (1, 1)
    assert outcome.promoted is False and outcome.checkpoint == str(v0)
    assert outcome.after["pairwise_accuracy"] == 0.5 and "fell from" in outcome.reason
    gate = read_json(tmp_path / "update" / "gate.json")
    assert gate["promoted"] is False and gate["before"]["pairwise_accuracy"] == before
    assert outcome.warnings and "not promoted" in outcome.warnings[0]


def test_too_few_examples_keep_the_rm_and_say_why(tmp_path):
    registry = make_registry()
    cfg = _reward_config(registry, min_retrain_examples=64)
    v0 = _rm_v0(tmp_path)
    rm = CollapsingRM()
    rm.load(v0)
    ctx = make_context(tmp_path / "update", registry, cycle=1)
    outcome = update_reward_model(cfg, rm, v0, tmp_path, [make_sample()], _graded(10), _graded(20), ctx)
    assert outcome.promoted is False and outcome.replay == 10 and rm.trained_on == 0  # not retrained
    assert "fewer than reward.min_retrain_examples=64" in outcome.reason


def test_replay_tops_up_a_small_labelled_set_to_the_minimum(tmp_path):
    registry = make_registry()
    cfg = _reward_config(registry, min_retrain_examples=16, replay_fraction=0.5)
    v0 = _rm_v0(tmp_path)
    rm = FakeRewardModel()
    rm.load(v0)
    ctx = make_context(tmp_path / "update", registry, cycle=1)
    outcome = update_reward_model(cfg, rm, v0, tmp_path, [make_sample(f"Question {i}?") for i in range(3)],
                                  _graded(40), _graded(20), ctx)
    assert (outcome.labelled, outcome.replay) == (3, 13) and rm.trained_on == 16
    assert outcome.promoted is True and outcome.checkpoint != str(v0)
    assert len(read_jsonl(tmp_path / "update" / "labelled.jsonl")) == 3


def test_the_report_has_a_warnings_section(tmp_path):
    loop = _fake_loop(tmp_path)
    result = loop.run()
    html = result.report.read_text()
    assert "<h2>Warnings</h2>" in html
    assert result.warnings == [] and "None: every stage did its work" in html
    ledger = read_json(result.run_dir / "cycle-001" / "ledger.json")
    assert ledger["warnings"] == [] and ledger["kept"] > 0
    assert json.loads((result.run_dir / "warnings.json").read_text()) == []


def test_the_generator_evolves_between_cycles(tmp_path, monkeypatch):
    """generation.update (Algorithm 1, l. 14): cycle 1's top-reward kept samples become cycle 2's exemplar bank;
    the generator version changes, and cycle 2's prompts (new, not cached) carry the exemplars."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    prompts: list[str] = []
    from medgr2.testing.fake_servers import default_reply

    def reply(prompt: str) -> str:
        prompts.append(prompt)
        return json.dumps(default_reply(prompt))

    with FakeOpenAIServer(reply=reply) as server:
        path = _config(tmp_path, server.base_url, generation={
            "generator": {"name": "openai", "options": {"strategy": "meta_cognitive", "base_url": server.base_url,
                                                        "concurrency": 2, **FAST}},
            "update": {"name": "exemplar-bank", "options": {"per_cell": 2}}}, cycles=2)
        data = yaml.safe_load(path.read_text())
        registry = load_registry(["medgr2.testing"])
        result = Loop(load_config(data=data, registry=registry), registry, SilentReporter()).run()
        first, second = (c.ledger for c in result.cycles)
        assert first.requests == second.requests == 15  # cycle 2 asked again: its prompts changed
    assert first.generator_next and second.generator_version.endswith(f"bank.{first.generator_next}")
    assert second.generator_next != first.generator_next
    bank = json.loads((result.run_dir / "generator" / first.generator_next / "bank.json").read_text())
    assert sum(bank["counts"].values()) > 0
    marker = "Examples of high-quality questions written earlier"
    assert not any(marker in p for p in prompts[:15])
    assert sum(marker in p for p in prompts[15:]) == 15  # every cycle-2 prompt carries its modality's exemplars


@pytest.mark.parametrize(("spearman", "ordered", "warned"), [(0.2, 1.0, True), (0.9, 0.0, True), (0.9, 1.0, False)])
def test_a_poorly_calibrated_initial_reward_model_is_a_warning(tmp_path, monkeypatch, spearman, ordered, warned):
    """An R_φ v0 that cannot order its held-out grades would make top-K keep the wrong samples: the run
    goes on (the user may know better) but says so in the ledger and the report."""
    import medgr2.loop as loop_module

    real = loop_module.init_reward_model

    def poorly_calibrated(*args, **kwargs):
        result = real(*args, **kwargs)
        return result.model_copy(update={"metrics": {**result.metrics, "heldout_spearman": spearman,
                                                     "heldout_means_ordered": ordered}})

    monkeypatch.setattr(loop_module, "init_reward_model", poorly_calibrated)
    loop = _fake_loop(tmp_path, **{"reward.warn_below_spearman": 0.6})
    loop.run()
    flagged = [w for w in loop.warnings if w.startswith("R_φ v0 ranks")]
    assert bool(flagged) is warned
    if warned:
        assert f"Spearman {spearman:.2f}" in flagged[0] and "reward.model.options.epochs" in flagged[0]
