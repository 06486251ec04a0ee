"""Metrics: hand-computed tables, brute-force references, bootstrap properties, the report."""

from __future__ import annotations

import difflib
import random

import numpy as np
import pytest

from medgr2.data import EvalReport, Prediction
from medgr2_eval.prediction_files import score_predictions
from medgr2_eval.metrics import build_report, group_metrics, outcomes
from medgr2_eval.scorers import Verdict, _most_similar


def pred(i, gt, answer, options=("a", "b", "c"), **kw):
    return Prediction(
        question_id=str(i), question="q?", options=options, gt_answer=gt, model_answer=answer, **kw
    )


def verdict(p: Prediction) -> Verdict:
    if p.model_answer not in p.options:
        return Verdict(False, False)
    i = p.options.index(p.model_answer)
    return Verdict(p.model_answer == p.gt_answer, True, p.model_answer, i)


def report(preds, **kw) -> EvalReport:
    return build_report(preds, [verdict(p) for p in preds], "test", **kw)


def test_accuracy_invalid_and_valid_only():
    preds = [pred(0, "a", "a"), pred(1, "a", "b"), pred(2, "b", "b"), pred(3, "b", "?")]
    m = report(preds).overall
    assert (m.n, m.correct, m.invalid) == (4, 2, 1)
    assert m.accuracy == 0.5  # invalid counted wrong
    assert m.accuracy_valid_only == pytest.approx(2 / 3)  # invalid skipped
    # F1: a: tp1 fp0 fn1 -> 2/3; b: tp1 fp1 fn1 -> 1/2; macro 7/12. Recall a 1/2, b 1/2.
    assert m.macro_f1 == pytest.approx(7 / 12, abs=1e-6)
    assert m.balanced_accuracy == pytest.approx(0.5)
    assert m.auroc is None  # no option scores: never faked


def test_all_invalid_has_no_valid_only_accuracy():
    m = report([pred(0, "a", "?"), pred(1, "b", "!")]).overall
    assert (m.accuracy, m.accuracy_valid_only, m.invalid) == (0.0, None, 2)


def test_breakdowns_by_modality_question_type_dataset():
    preds = [
        pred(0, "a", "a", modality="ct", dataset="d1", question_type="disease_diagnosis"),
        pred(1, "a", "b", modality="ct", dataset="d2"),
        pred(2, "b", "b", modality="mri", dataset="d2"),
    ]
    r = report(preds)
    assert set(r.by_modality) == {"ct", "mri"} and r.by_modality["ct"].accuracy == 0.5
    assert set(r.by_dataset) == {"d1", "d2"} and r.by_dataset["d2"].n == 2
    assert set(r.by_question_type) == {"disease_diagnosis", "unknown"}
    assert sum(g.n for g in r.by_modality.values()) == r.overall.n


def test_no_breakdown_without_labels():
    r = report([pred(0, "a", "a"), pred(1, "b", "a")])
    assert r.by_modality == {} and r.by_dataset == {} and r.by_question_type == {}


def _f1_reference(gt, pr):
    labels = sorted(set(gt) | {p for p in pr if p is not None})
    f1s, recalls = [], []
    for c in labels:
        tp = sum(1 for g, p in zip(gt, pr) if g == c and p == c)
        fp = sum(1 for g, p in zip(gt, pr) if g != c and p == c)
        fn = sum(1 for g, p in zip(gt, pr) if g == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn))
        if any(g == c for g in gt):
            recalls.append(tp / sum(1 for g in gt if g == c))
    return np.mean(f1s), np.mean(recalls)


def test_macro_f1_and_balanced_accuracy_match_brute_force_per_group():
    rng = random.Random(3)
    opts = ("a", "b", "c", "d")
    preds = [
        pred(i, rng.choice(opts), rng.choice(opts + ("?",)), options=opts, modality=rng.choice(["x", "y"]))
        for i in range(400)
    ]
    r = report(preds, bootstrap=0)
    for mod, m in [("all", r.overall), *r.by_modality.items()]:
        sel = [p for p in preds if mod == "all" or p.modality == mod]
        f1, bal = _f1_reference(
            [p.gt_answer for p in sel], [p.model_answer if p.model_answer in opts else None for p in sel]
        )
        assert m.macro_f1 == pytest.approx(f1, abs=1e-6)
        assert m.balanced_accuracy == pytest.approx(bal, abs=1e-6)


def _auroc_reference(pos, neg):
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def test_auroc_matches_pairwise_reference_with_ties_and_groups():
    rng = random.Random(5)
    preds = []
    for i in range(150):
        k = rng.randint(2, 4)
        opts = tuple("abcd"[:k])
        gt = rng.choice(opts)
        scores = tuple(float(rng.choice([-2, -1, -1, 0])) + (0.5 if o == gt else 0.0) for o in opts)
        preds.append(pred(i, gt, gt, options=opts, option_scores=scores, modality=rng.choice(["x", "y"])))
    r = report(preds, bootstrap=0)
    for mod, m in [("all", r.overall), *r.by_modality.items()]:
        pos, neg = [], []
        for p in preds:
            if mod != "all" and p.modality != mod:
                continue
            e = np.exp(np.array(p.option_scores) - max(p.option_scores))
            prob = e / e.sum()
            for o, s in zip(p.options, prob):
                (pos if o == p.gt_answer else neg).append(s)
        assert m.auroc == pytest.approx(_auroc_reference(pos, neg), abs=1e-6)  # reports round to 6 digits
    assert r.meta["n_with_option_scores"] == 150


def test_auroc_only_over_items_with_scores_and_none_without():
    with_scores = [
        pred(0, "a", "a", option_scores=(0.0, -1.0, -2.0)),
        pred(1, "b", "a", option_scores=(0.0, -3.0, -1.0)),
    ]
    r = report(with_scores + [pred(2, "c", "c")], bootstrap=0)
    assert r.overall.auroc is not None and r.meta["n_with_option_scores"] == 2
    perfect = report([pred(0, "a", "a", option_scores=(5.0, 0.0, 0.0))], bootstrap=0)
    assert perfect.overall.auroc == 1.0


def test_bootstrap_ci_is_a_resampling_interval():
    rng = np.random.default_rng(0)
    outcomes_ = rng.random(500) < 0.7
    preds = [pred(i, "a", "a" if ok else "b") for i, ok in enumerate(outcomes_)]
    m = report(preds, bootstrap=2000, seed=1).overall
    lo, hi = m.ci95
    assert lo < m.accuracy < hi
    # the classic resampling bootstrap of the same outcomes gives the same interval (within MC error)
    idx = rng.integers(0, 500, size=(2000, 500))
    ref = np.percentile(outcomes_[idx].mean(axis=1), [2.5, 97.5])
    assert lo == pytest.approx(ref[0], abs=0.012) and hi == pytest.approx(ref[1], abs=0.012)
    assert report(preds, bootstrap=2000, seed=1).overall.ci95 == m.ci95  # seeded
    small = report(preds[:50], bootstrap=2000, seed=1).overall.ci95
    assert small[1] - small[0] > hi - lo  # fewer items: wider interval


def test_group_metrics_without_bootstrap():
    preds = [pred(0, "a", "a"), pred(1, "b", "a")]
    o = outcomes(preds, [verdict(p) for p in preds])
    assert group_metrics(o, None, bootstrap=0)["all"].ci95 is None


def test_score_predictions_parses_options_from_question_and_names_the_scorer():
    q = "Diagnosis? Please choose one of the following: normal or pneumonia. You must pick only one answer."
    preds = [
        Prediction(question_id="1", question=q, gt_answer="pneumonia", model_answer="Pneumonia."),
        Prediction(question_id="2", question=q, gt_answer="normal", model_answer="pneumonia"),
        Prediction(question_id="3", question=q, gt_answer="normal", model_answer="maybe"),
    ]
    r = score_predictions(preds, "medgr2")
    assert r.scorer == "medgr2"
    assert (r.overall.correct, r.overall.invalid, r.overall.n) == (1, 1, 3)
    assert r.meta["n_without_options"] == 0
    assert score_predictions(preds, "omnimedvqa").overall.invalid == 0


def test_empty_predictions_are_an_error():
    with pytest.raises(ValueError, match="no predictions"):
        build_report([], [], "medgr2")


def test_fast_most_similar_equals_plain_difflib():
    rng = random.Random(1)
    words = ["normal", "pneumonia", "effusion", "grade 1", "grade 2", "benign", "CT", "X-ray", "the", "lung"]
    for _ in range(3000):
        opts = tuple(rng.sample(words, rng.randint(2, 5)))
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
        best, best_r = None, 0.0
        for i, o in enumerate(opts):
            r = difflib.SequenceMatcher(None, o, text).ratio()
            if r > best_r:
                best, best_r = i, r
        assert _most_similar(opts, text, None) == best, (opts, text)


def test_a_third_party_bool_scorer_with_another_parameter_order_works():
    from medgr2.testing import fake_scorer  # (model_answer, gt_answer, options) -> bool

    preds = [pred(0, "a", " A"), pred(1, "b", "c")]
    r = score_predictions(preds, fake_scorer, bootstrap=0)
    assert (r.overall.correct, r.overall.invalid, r.scorer) == (1, 0, "fake_scorer")
