"""Reward stages, judge seeding and calibration (fakes: no torch model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from medgr2_reward.calibration import calibration_metrics, spearman, write_calibration
from medgr2_reward.judge import CRITERIA, judge_examples, judge_schema, verdict_to_reward
from medgr2_reward.options import JudgeOptions
from medgr2_reward.grade_set import build_grade_set
from medgr2_reward.labellers import answer_matches, judge_samples, label_policy_samples

from medgr2.data import GradedExample, Reject, RewardInput
from medgr2.stages.reward import score_samples, train_reward_model
from medgr2.testing import FakeEvaluator, FakeEvaluatorOptions, FakeRewardModel, make_context, make_sample


def syn(word: str) -> tuple[str, ...]:
    return {"opacity": ("opaqueness",), "mild": ("balmy",), "effusion": ("outpouring",)}.get(word.lower(), ())


def _samples(n: int = 8):
    diag = ["normal", "pneumonia", "tumour", "fracture"]
    return [make_sample(answer=diag[i % 4], image=f"img/{i}.png", subject_id=f"p{i}",
                        rationale=f"Mild opacity and effusion suggest {diag[i % 4]} in case {i}.") for i in range(n)]


@pytest.mark.parametrize("scores, targets, spear, pairwise, ordered", [
    ([10, 6, 0, -6], [10, 6, 0, -6], 1.0, 1.0, True),
    ([-6, 0, 6, 10], [10, 6, 0, -6], -1.0, 0.0, False),
    ([5, 5, 5, 1], [10, 6, 0, -6], None, 0.75, False),
    ([9, 8, 7, 2, 1, 0], [10, 10, 6, 6, -6, -6], None, 1.0, True),
])
def test_calibration_metrics_table(scores, targets, spear, pairwise, ordered):
    m = calibration_metrics(scores, targets, [1] * len(scores))
    if spear is not None:
        assert m["spearman"] == pytest.approx(spear)
    assert m["pairwise_accuracy"] == pytest.approx(pairwise)
    assert m["means_ordered"] is ordered
    assert sum(v["n"] for v in m["per_target"].values()) == len(scores)


def test_spearman_handles_ties_and_constants():
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)
    assert spearman([1, 1, 1], [1, 2, 3]) != spearman([1, 1, 1], [1, 2, 3])  # NaN


def test_write_calibration(tmp_path):
    m = write_calibration(tmp_path, [9, 5, 1, -5], [10, 6, 0, -6], [1, 2, 3, 4], version="v1")
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["model_version"] == "v1" and saved["pairwise_accuracy"] == m["pairwise_accuracy"] == 1.0
    assert saved["per_target"]["6"]["mean"] == 5.0
    assert (tmp_path / "calibration.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("verdict, expected", [
    ({c: 10 for c in CRITERIA}, 10.0),
    ({c: 0 for c in CRITERIA}, -6.0),
    ({c: 5 for c in CRITERIA}, 2.0),
    ({"factual_accuracy": 10, "formatted_accuracy": 0, "reasoning_soundness": 0, "instruction_relevance": 0},
     -6 + 16 * 0.4),
])
def test_verdict_mapping(verdict, expected):
    assert verdict_to_reward(verdict) == pytest.approx(expected)


@pytest.mark.parametrize("verdict, problem", [
    ({"factual_accuracy": 10}, "missing"),
    ({**{c: 5 for c in CRITERIA}, "reasoning_soundness": 11}, "outside"),
    ({**{c: 5 for c in CRITERIA}, "formatted_accuracy": "high"}, "not a number"),
])
def test_verdict_errors(verdict, problem):
    with pytest.raises(ValueError, match=problem):
        verdict_to_reward(verdict)


class FakeJudge:
    """A judge backend: high marks when the answer is in the rationale, a Reject for empty answers."""

    def __init__(self):
        self.calls = []
        self.last_ledger = None

    def screen(self, samples):
        return [None] * len(samples)

    def complete_json(self, prompts, schema, context):
        self.calls.append((prompts, schema))
        out = []
        for text, images in prompts:
            if "Answer: (no answer)" in text:
                out.append(Reject(stage="complete_json", id="x", reason="refused"))
            elif "Answer: bad" in text:
                out.append({"factual_accuracy": 99})
            else:
                answer = text.split("Answer: ")[1].split("\n")[0]
                good = answer in text.split("Rationale: ")[-1]
                out.append({c: (9 if good else 1) for c in CRITERIA})
        return out


def test_judge_examples(tmp_path):
    judge = FakeJudge()
    s = make_sample(answer="pneumonia", rationale="Consolidation: pneumonia.")
    inputs = [RewardInput.from_sample(s), RewardInput.from_sample(s, "normal"),
              RewardInput.from_sample(s, "(no answer)"), RewardInput.from_sample(s, "bad")]
    examples, rejects = judge_examples(judge, inputs, make_context(tmp_path), group_ids=["a", "b", "c", "d"])
    assert [e.target for e in examples] == pytest.approx([-6 + 16 * 0.9, -6 + 16 * 0.1])
    assert {e.origin for e in examples} == {"judge"} and [e.group_id for e in examples] == ["a", "b"]
    assert [(r.id, r.reason) for r in rejects] == [("c", "refused"), ("d", "invalid_verdict")]
    prompts, schema = judge.calls[0]
    assert schema == judge_schema() and prompts[0][1] == [s.images[0]]
    assert all(c in prompts[0][0] for c in CRITERIA)
    with pytest.raises(TypeError, match="complete_json"):
        judge_examples(object(), inputs, make_context(tmp_path))
    weighted = JudgeOptions(weights={"factual_accuracy": 1.0})
    assert verdict_to_reward({c: (10 if c == "factual_accuracy" else 0) for c in CRITERIA}, weighted) == 10.0


def test_score_samples_sets_reward_and_version(tmp_path):
    rm = FakeRewardModel()
    samples = _samples(5)
    scored = score_samples(rm, samples, make_context(tmp_path))
    expected = rm.score([RewardInput.from_sample(s) for s in samples])
    for s, out, x in zip(samples, scored, expected):
        assert out.id == s.id and out.reward.total == x and out.reward.terms == {"r_phi": x}
        assert out.reward.model_version == rm.version and s.reward is None


def test_build_grade_set_from_samples():
    train, held = build_grade_set(samples=_samples(20), options={"held_out_fraction": 0.3}, seed=1, synonyms=syn)
    assert train and held and not {e.group_id for e in train} & {e.group_id for e in held}
    assert {e.grade for e in train} == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="no reference text"):
        build_grade_set(synonyms=syn)
    with pytest.raises(ValueError, match="held_out_fraction"):
        build_grade_set(samples=_samples(4), options={"held_out_fraction": 2}, synonyms=syn)


def test_build_grade_set_from_reference_files(tmp_path):
    (tmp_path / "r.txt").write_text("Mild opacity at the base.\nSmall effusion on the left.\nNo effusion seen.\n")
    train, held = build_grade_set(references=[{"format": "text", "path": str(tmp_path / "r.txt")}],
                                  options={"held_out_fraction": 0.0, "grades": [1, 3]}, synonyms=syn)
    assert len(train) == 6 and not held
    with pytest.raises(ValueError, match="text_columns"):
        build_grade_set(references=[{"format": "csv", "path": str(tmp_path / "r.txt")}], synonyms=syn)


def test_train_reward_model_writes_calibration_for_any_model(tmp_path):
    rm = FakeRewardModel()
    ex = [GradedExample(question="q", answer=f"a{i}", target=t, grade=g, group_id=str(i))
          for i, (t, g) in enumerate([(10, 1), (6, 2), (0, 3), (-6, 4)] * 3)]
    result = train_reward_model(rm, ex, ex[:8], make_context(tmp_path))
    cal = json.loads((Path(result.checkpoint) / "calibration.json").read_text())
    assert cal["n"] == 8 and "heldout_spearman" in result.metrics


def test_answer_matches():
    s = make_sample(options=("normal", "pneumonia"), answer="pneumonia")
    assert answer_matches(s, "Pneumonia.") and answer_matches(s, "B") and not answer_matches(s, "normal")


def test_label_by_answer_match(tmp_path):
    samples = _samples(12)
    ev = FakeEvaluator(FakeEvaluatorOptions(accuracy=0.5))
    out = label_policy_samples(samples, tmp_path / "policy", make_context(tmp_path), method="match", evaluator=ev)
    assert len(out) == 12 and {e.origin for e in out} == {"match"}
    by_q = {s.id: s for s in samples}
    for e, s in zip(out, samples):
        assert e.target == (10.0 if e.answer == s.answer else -6.0)
        assert e.question == RewardInput.from_sample(by_q[s.id]).question
    assert 0 < sum(e.target > 0 for e in out) < 12
    with pytest.raises(ValueError, match="evaluator"):
        label_policy_samples(samples, None, make_context(tmp_path), method="match")


def test_label_by_judge_and_by_grade(tmp_path):
    samples = _samples(8)
    ev = FakeEvaluator(FakeEvaluatorOptions(accuracy=0.5))
    out = label_policy_samples(samples, tmp_path / "p", make_context(tmp_path), method="judge", evaluator=ev,
                               judge=FakeJudge())
    assert len(out) == 8 and {e.origin for e in out} == {"judge"}
    for e, s in zip(out, samples):
        assert (e.target > 2) == (e.answer == s.answer)
    graded = label_policy_samples(samples, None, make_context(tmp_path, cycle=2), method="grade",
                                  grade_options={"grades": [1, 3, 4]})
    assert {e.grade for e in graded} == {1, 3, 4} and {e.split for e in graded} == {None}
    with pytest.raises(ValueError, match="unknown labelling"):
        label_policy_samples(samples, None, make_context(tmp_path), method="vibes")


def test_judge_samples_seeds_graded_examples(tmp_path):
    samples = _samples(4)
    examples, rejects = judge_samples(FakeJudge(), samples, make_context(tmp_path),
                                      answers=[s.answer if i % 2 else "(no answer)" for i, s in enumerate(samples)])
    assert [e.group_id for e in examples] == ["p1", "p3"] and [r.id for r in rejects] == ["p0", "p2"]
    assert all(e.origin == "judge" and e.target > 2 for e in examples)
