"""The per-defect measurement: AUROC of R_phi per defect kind, defect shares before/after a kept set,
image swapping within a modality; on synthetic scores with known answers."""

from __future__ import annotations

import doctest
import random

import pytest

from medgr2.data import ImageRef, Modality, Provenance, RewardBreakdown, VQASample
from medgr2_eval import defects as dr
from medgr2_eval.defects import auroc, defect_report, format_defect_table, swap_images


def sample(i, kind, reward, modality=Modality.XRAY, image=None):
    raw = {} if kind is None else {"defect": kind}
    return VQASample(images=(ImageRef(path=f"{image if image is not None else i}.png", root="/d",
                                      modality=modality),),
                     question=f"Question {i}?", options=("a", "b"), answer="a", modality=modality,
                     provenance=Provenance(source_dataset="D", raw=raw),
                     reward=None if reward is None else RewardBreakdown(total=reward))


def test_docstrings_and_key_match_the_generator():
    assert doctest.testmod(dr).failed == 0
    from medgr2_datasets.defects import CLEAN, DEFECT_KEY

    assert (dr.DEFECT_KEY, dr.CLEAN) == (DEFECT_KEY, CLEAN)


def test_auroc_against_brute_force():
    rng = random.Random(0)
    for _ in range(50):
        pos = [rng.choice([0, 1, 2, 3, 4.5]) for _ in range(rng.randint(1, 12))]
        neg = [rng.choice([0, 1, 2, 3, 4.5]) for _ in range(rng.randint(1, 12))]
        brute = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))
        assert auroc(pos, neg) == pytest.approx(brute)
    assert auroc([1.0], []) is None and auroc([2.0], [1.0]) == 1.0 and auroc([1.0], [2.0]) == 0.0


def corpus():
    """10 clean (rewards 6..10.5), 4 wrong_confusable overlapping the clean ones (5, 7, 9, 11),
    4 bad_rationale all below (0..3), 2 unanswerable tied with clean values (6, 6)."""
    out = [sample(i, "none", 6 + 0.5 * i) for i in range(10)]
    out += [sample(10 + i, "wrong_confusable", r) for i, r in enumerate([5, 7, 9, 11])]
    out += [sample(20 + i, "bad_rationale", float(i)) for i in range(4)]
    out += [sample(30 + i, "unanswerable", 6.0) for i in range(2)]
    return out


def test_per_kind_auroc_and_shares_exact():
    samples = corpus()
    kept = sorted(samples, key=lambda s: -s.reward.total)[:10]  # a top-10 filter
    rep = defect_report(samples, kept)
    assert (rep["n"], rep["n_kept"]) == (20, 10)
    k = rep["kinds"]
    assert list(k) == ["bad_rationale", "unanswerable", "wrong_confusable", "any"]
    assert k["bad_rationale"]["auroc"] == 1.0
    # clean 6, 6.5 .. 10.5 against 5, 7, 9, 11: above 5: 10; above 7: 7 and one tie (7.0): 7.5;
    # above 9: 3 and one tie: 3.5; above 11: 0 -> 21 of 40 pairs
    assert k["wrong_confusable"]["auroc"] == pytest.approx((10 + 7.5 + 3.5 + 0) / 40, abs=1e-4)
    # unanswerable at 6.0: 9 clean above, 1 tie -> 9.5 / 10 per sample
    assert k["unanswerable"]["auroc"] == 0.95
    assert k["any"]["n"] == 10 and k["any"]["share_before"] == 0.5
    # kept: 11 (wrong_confusable), 10.5 .. 9.0 (clean, first in input order), 9 (wrong_confusable), 8.5 .. 7.5
    kept_kinds = [dr.defect_kind(s) for s in kept]
    assert kept_kinds.count("wrong_confusable") == 2
    assert k["wrong_confusable"]["kept"] == kept_kinds.count("wrong_confusable")
    assert k["bad_rationale"] == {**k["bad_rationale"], "kept": 0, "share_after": 0.0, "kept_rate": 0.0}
    assert k["any"]["share_after"] == pytest.approx(kept_kinds.count("wrong_confusable") / 10)
    assert k["any"]["share_after"] < k["any"]["share_before"] / 2  # the defect share fell by over half
    assert rep["clean"]["n"] == 10 and rep["clean"]["kept"] == 10 - kept_kinds.count("wrong_confusable")


def test_ids_as_kept_scores_override_and_bootstrap():
    samples = corpus()
    by_ids = defect_report(samples, [s.id for s in samples[:5]])
    assert by_ids["n_kept"] == 5 and by_ids["kinds"]["any"]["kept"] == 0
    flipped = {s.id: -s.reward.total for s in samples}
    rep = defect_report(samples, scores=flipped, bootstrap=200, seed=1)
    assert rep["kinds"]["bad_rationale"]["auroc"] == 0.0 and rep["n_kept"] is None
    assert "share_after" not in rep["kinds"]["any"]
    lo, hi = rep["kinds"]["wrong_confusable"]["auroc_ci95"]
    assert 0.0 <= lo <= rep["kinds"]["wrong_confusable"]["auroc"] <= hi <= 1.0
    assert defect_report(samples, scores=flipped, bootstrap=200, seed=1) == rep  # seeded


def test_clear_errors():
    with pytest.raises(ValueError, match="records no defect kind.*defects: "):
        defect_report([sample(0, None, 1.0)])
    with pytest.raises(ValueError, match="has no reward.*medgr2 score"):
        defect_report([sample(0, "none", None)])
    with pytest.raises(ValueError, match="no entry in scores"):
        defect_report([sample(0, "none", 1.0)], scores={})
    with pytest.raises(ValueError, match="no samples"):
        defect_report([])


def test_only_clean_samples_give_no_rows_and_the_table_renders():
    rep = defect_report([sample(i, "none", float(i)) for i in range(3)], [])
    assert rep["kinds"] == {} and rep["clean"]["kept"] == 0
    table = format_defect_table(defect_report(corpus(), corpus()[:10], bootstrap=50))
    lines = table.strip().splitlines()
    assert lines[0].startswith("| defect | n | AUROC") and "share after" in lines[0]
    assert lines[-1].startswith("| any | 10 | ") and lines[2].startswith("| bad_rationale | 4 | 1.000 [")
    assert "| 0.0 % | 0 of 4 |" in lines[2]


def test_swap_images_stays_within_modality_and_keeps_ids():
    samples = [sample(i, "none", 1.0, Modality.XRAY, image=i % 4) for i in range(8)]
    samples += [sample(10 + i, "none", 1.0, Modality.CT, image=10 + i % 3) for i in range(6)]
    samples += [sample(20, "none", 1.0, Modality.MRI, image=20)]
    swapped = swap_images(samples, seed=3)
    assert [s.id for s in swapped] == [s.id for s in samples]
    for a, b in zip(samples, swapped):
        assert (a.question, a.answer, a.provenance) == (b.question, b.answer, b.provenance)
        if a.modality is Modality.MRI:
            assert b.images == a.images  # the only MRI image stays
        else:
            assert b.images[0].key != a.images[0].key
            assert b.images[0].path in {s.images[0].path for s in samples if s.modality is a.modality}
    assert swap_images(samples, seed=3) == swapped and swap_images(samples, seed=4) != swapped


def test_generator_filter_and_report_together(registry, tmp_path):
    """labels with defects -> synthetic R_phi (defects score lower, noisily) -> stratified top-K in the
    filter stage -> per-defect report: the measured pipeline a quickstart report runs."""
    import numpy as np

    from medgr2.interfaces import StageContext
    from medgr2.stages.filter import apply_filters
    from test_effect_defects import corpus as labels_corpus

    rates = {"wrong_confusable": 0.2, "bad_rationale": 0.1, "bad_options": 0.1}
    ctx = StageContext(work_dir=tmp_path / "gen", seed=0, cycle=1, registry=registry)
    samples = registry.create("generator", "labels", {"per_item": 2, "seed": 5, "defects": rates}).generate(
        labels_corpus(), ctx).samples
    rng = np.random.default_rng(0)
    mean = {"none": 8.0, "wrong_confusable": 5.0, "bad_rationale": 2.0, "bad_options": 4.0}
    scored = [s.model_copy(update={"reward": RewardBreakdown(
        total=float(rng.normal(mean[dr.defect_kind(s)], 1.5)))}) for s in samples]
    flt = registry.create("filter", "top_k", {"fraction": 0.5, "stratify_by": ["modality"]})
    fctx = StageContext(work_dir=tmp_path / "f", registry=registry)
    kept, _ = apply_filters([("top_k", flt)], scored, [], fctx)
    rep = defect_report(scored, kept)
    k = rep["kinds"]
    assert k["bad_rationale"]["auroc"] > 0.95 and 0.8 < k["wrong_confusable"]["auroc"] < 0.99
    assert k["any"]["share_before"] == pytest.approx(0.4, abs=0.01)
    assert k["any"]["share_after"] < k["any"]["share_before"] / 2
