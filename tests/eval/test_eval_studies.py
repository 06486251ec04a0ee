"""Studies: transfer heatmaps, error transitions, data-efficiency curves, and their runners."""

from __future__ import annotations

import json

import pytest

from medgr2.data import Modality, Prediction, QuestionType
from medgr2.testing import FakeEvaluator, FakeTrainer, make_context, make_sample
from medgr2_eval.study_cells import run_efficiency, run_transfer
from medgr2_eval.study_tables import (
    efficiency_curves,
    error_transitions,
    transfer_matrix,
    write_efficiency,
    write_transfer,
    write_transitions,
)


def p(qid, modality, right, qtype="disease_diagnosis"):
    return Prediction(
        question_id=qid,
        question="q?",
        options=("a", "b"),
        gt_answer="a",
        model_answer="a" if right else "b",
        modality=modality,
        question_type=qtype,
    )


def test_transfer_matrix_rows_trained_cols_evaluated(tmp_path):
    preds = {
        "ct": [p("1", "ct", True), p("2", "ct", True), p("3", "mri", False)],
        "mri": [p("1", "ct", False), p("2", "ct", True), p("3", "mri", True)],
    }
    t = transfer_matrix(preds, "modality", "medgr2", groups=["ct", "mri", "oct"])
    assert t.train_groups == ["ct", "mri"] and t.eval_groups == ["ct", "mri", "oct"]
    assert t.accuracy == [[1.0, 0.0, None], [0.5, 1.0, None]]
    assert t.n == [[2, 1, 0], [2, 1, 0]]
    paths = write_transfer(t, tmp_path)
    assert {x.suffix for x in paths} == {".json", ".md", ".png", ".svg"} and all(
        x.stat().st_size for x in paths
    )
    assert json.loads((tmp_path / "transfer.json").read_text())["accuracy"][1][0] == 0.5
    md = (tmp_path / "transfer.md").read_text()
    assert "| **ct** | 100.0 | 0.0 | — |" in md
    assert (tmp_path / "transfer.svg").read_text().lstrip().startswith("<?xml")


def test_transfer_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="by="):
        transfer_matrix({"x": [p("1", "ct", True)]}, "colour")
    with pytest.raises(ValueError, match="no prediction sets"):
        transfer_matrix({}, "modality")


def test_error_transitions_counts_and_plot(tmp_path):
    before = [
        p("1", "ct", True),
        p("2", "ct", False),
        p("3", "mri", True),
        p("4", "mri", False),
        p("9", "ct", True),
    ]
    after = [
        p("1", "ct", True),
        p("2", "ct", True),
        p("3", "mri", False),
        p("4", "mri", False),
        p("8", "ct", True),
    ]
    t = error_transitions(before, after, "modality", "medgr2", names=("base", "sft"))
    assert t.groups == {
        "ct": {"c->c": 1, "w->c": 1, "c->w": 0, "w->w": 0},
        "mri": {"c->c": 0, "w->c": 0, "c->w": 1, "w->w": 1},
    }
    assert t.overall == {"c->c": 1, "w->c": 1, "c->w": 1, "w->w": 1} and t.unmatched == 2
    paths = write_transitions(t, tmp_path)
    assert all(x.is_file() for x in paths)
    md = (tmp_path / "transitions.md").read_text()
    assert "| ct | 2 | 1 | 1 | 0 | 0 | +50.0 |" in md and "2 question(s)" in md
    with pytest.raises(ValueError, match="share no question_id"):
        error_transitions(before, [p("x", "ct", True)])


def test_efficiency_curves_aggregate_and_plot(tmp_path):
    rows = [{"method": "topk", "size": 10, "seed": s, "accuracy": a} for s, a in enumerate([0.5, 0.7])]
    rows += [
        {"method": "topk", "size": 20, "seed": 0, "accuracy": 0.8},
        {"method": "randk", "size": 10, "seed": 0, "accuracy": 0.4},
        {"method": "randk", "size": 20, "seed": 0, "accuracy": 0.6},
        {"method": "full", "size": 100, "seed": 0, "accuracy": 0.65},
    ]
    pts = efficiency_curves(rows)
    top10 = next(x for x in pts if x.method == "topk" and x.size == 10)
    assert (top10.n_seeds, top10.mean, top10.min, top10.max) == (2, 0.6, 0.5, 0.7)
    assert top10.sd == pytest.approx(0.141421, abs=1e-6)
    paths = write_efficiency(pts, tmp_path)
    assert all(x.is_file() and x.stat().st_size for x in paths)
    assert "| topk | 10 | 2 | 60.0 |" in (tmp_path / "efficiency.md").read_text()
    with pytest.raises(ValueError, match="lacks accuracy"):
        efficiency_curves([{"method": "topk", "size": 1}])


def _samples(n=12):
    mods = [Modality.CT, Modality.MRI, Modality.XRAY]
    return [
        make_sample(
            f"Case {i}: what is shown?",
            modality=mods[i % 3],
            question_type=list(QuestionType)[i % 5],
            reward=float(i % 7),
        )
        for i in range(n)
    ]


def test_run_transfer_with_registered_style_components(tmp_path, registry):
    samples = _samples()
    ctx = make_context(tmp_path / "w", registry=registry)
    evaluator = FakeEvaluator()
    t = run_transfer(
        samples, samples, "modality", FakeTrainer(), evaluator, tmp_path / "base", tmp_path / "t", ctx
    )
    assert t.train_groups == ["ct", "mri", "xray"] == t.eval_groups
    assert all(a is not None for row in t.accuracy for a in row)
    # each cell trained on its own group only
    policy = json.loads((tmp_path / "t" / "train-ct" / "model" / "policy.json").read_text())
    assert set(policy["samples"]) == {s.id for s in samples if s.modality == Modality.CT}
    # resumable: a finished cell is not redone
    (tmp_path / "t" / "train-ct" / "model" / "policy.json").unlink()
    run_transfer(
        samples, samples, "modality", FakeTrainer(), evaluator, tmp_path / "base", tmp_path / "t", ctx
    )
    assert not (tmp_path / "t" / "train-ct" / "model" / "policy.json").exists()
    with pytest.raises(ValueError, match="no training samples for modality oct"):
        run_transfer(
            samples,
            samples,
            "modality",
            FakeTrainer(),
            evaluator,
            tmp_path,
            tmp_path / "x",
            ctx,
            groups=["oct"],
        )


def test_run_efficiency_topk_randk_full(tmp_path, registry):
    if ("filter", "top_k") not in registry:
        pytest.skip("the filters plugin (top_k, rand_k) is not installed")
    samples = _samples()
    ctx = make_context(tmp_path / "w", registry=registry)
    rows = run_efficiency(
        samples,
        samples,
        [3, 6],
        [0, 1],
        FakeTrainer(),
        FakeEvaluator(),
        tmp_path / "base",
        tmp_path / "e",
        ctx,
        registry=registry,
    )
    assert {(r["method"], r["size"]) for r in rows} == {
        ("topk", 3),
        ("topk", 6),
        ("randk", 3),
        ("randk", 6),
        ("full", 12),
    }
    assert len(rows) == 10 and all(r["n_train"] == r["size"] for r in rows)
    top3 = json.loads((tmp_path / "e" / "topk-k3-seed0" / "model" / "policy.json").read_text())["samples"]
    best = sorted(samples, key=lambda s: -s.reward.total)[:3]
    assert set(top3) == {s.id for s in best}
    r0 = json.loads((tmp_path / "e" / "randk-k3-seed0" / "model" / "policy.json").read_text())["samples"]
    r1 = json.loads((tmp_path / "e" / "randk-k3-seed1" / "model" / "policy.json").read_text())["samples"]
    assert r0 != r1  # seeds differ
    assert {x.method for x in efficiency_curves(rows)} == {"topk", "randk", "full"}
    with pytest.raises(ValueError, match="exceed"):
        run_efficiency(
            samples,
            samples,
            [50],
            [0],
            FakeTrainer(),
            FakeEvaluator(),
            tmp_path,
            tmp_path / "z",
            ctx,
            registry=registry,
        )


def test_transfer_by_question_type_is_five_by_five(tmp_path):
    types = [t.value for t in QuestionType]
    preds = {
        t: [p(str(i), "ct", (i + k) % 2 == 0, qtype=types[i % 5]) for i in range(20)]
        for k, t in enumerate(types)
    }
    t = transfer_matrix(preds, "question_type", "medgr2")
    assert t.train_groups == types and sorted(t.eval_groups) == sorted(types)
    assert len(t.accuracy) == 5 and all(len(r) == 5 for r in t.accuracy)
    assert all(n == 4 for row in t.n for n in row)
    write_transfer(t, tmp_path, stem="transfer-qtype")
    assert (tmp_path / "transfer-qtype.svg").is_file()
