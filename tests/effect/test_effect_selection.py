"""Selection that keeps the mix: stratify_by for threshold / top_k / rand_k, with exact counts, and the
mix (before and after) that every selection filter writes beside the funnel."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from medgr2.data import ImageRef, Modality, Provenance, QuestionType, RewardBreakdown, VQASample
from medgr2.interfaces import StageContext
from medgr2.registry import OptionsError
from medgr2_filters.selection import apportion, stratum_key

QT = QuestionType


def sample(i, modality, qtype, dataset, reward):
    return VQASample(images=(ImageRef(path=f"{i}.png", root="/d", sha256=f"{i:064x}"),),
                     question=f"Question number {i}?", options=("a", "b"), answer="a", modality=modality,
                     question_type=qtype, provenance=Provenance(source_dataset=dataset),
                     reward=RewardBreakdown(total=reward))


def corpus():
    """40 samples: 10 X-ray scored low (0..4.5), 20 CT scored high (5..9.75), 10 dermoscopy in between
    (2.25..6.75) - R_phi's scores follow modality, as in table2_cpu."""
    out = [sample(i, Modality.XRAY, QT.DISEASE_DIAGNOSIS, "PneumoniaMNIST", 0.5 * i) for i in range(10)]
    out += [sample(100 + i, Modality.CT, QT.ANATOMY_IDENTIFICATION, "TotalSegmentator", 5 + 0.25 * i)
            for i in range(20)]
    out += [sample(200 + i, Modality.DERMOSCOPY, QT.DISEASE_DIAGNOSIS, "HAM10000", 2.25 + 0.5 * i)
            for i in range(10)]
    order = list(range(40))
    random.Random(0).shuffle(order)  # interleaved, so input order carries no stratum
    return [out[i] for i in order]


def kept_by(samples, decisions, field="modality"):
    return Counter(stratum_key(s, [field]) for s, d in zip(samples, decisions) if d.keep)


@pytest.fixture
def ctx(tmp_path, registry):
    return StageContext(work_dir=tmp_path / "filter", seed=11, cycle=2, registry=registry)


def test_apportion_is_exact_and_proportional():
    assert apportion(5, {"ct": 10, "xray": 6, "mri": 2}) == {"ct": 3, "xray": 2, "mri": 0}
    assert apportion(20, {"xray": 10, "ct": 20, "derm": 10}) == {"xray": 5, "ct": 10, "derm": 5}
    assert apportion(0, {"a": 3}) == {"a": 0} and apportion(3, {"a": 3}) == {"a": 3}
    rng = random.Random(1)
    for _ in range(200):
        sizes = {f"s{j}": rng.randint(0, 30) for j in range(rng.randint(1, 6))}
        n = sum(sizes.values())
        total = rng.randint(0, n)
        ks = apportion(total, sizes)
        assert sum(ks.values()) == total
        for key, k in ks.items():
            assert 0 <= k <= sizes[key] and abs(k - total * sizes[key] / max(n, 1)) < 1
    with pytest.raises(ValueError, match="cannot keep 4 of 3"):
        apportion(4, {"a": 3})


def test_top_k_plain_shifts_the_mix_and_stratified_keeps_it(registry, ctx):
    samples = corpus()
    plain = registry.create("filter", "top_k", {"fraction": 0.5}).apply(samples, [], ctx)
    assert kept_by(samples, plain) == {"ct": 17, "dermoscopy": 3}  # R_phi's modality bias empties X-ray
    mixed = registry.create("filter", "top_k", {"fraction": 0.5, "stratify_by": ["modality"]})
    out = mixed.apply(samples, [], ctx)
    assert kept_by(samples, out) == {"xray": 5, "ct": 10, "dermoscopy": 5}
    for s, d in zip(samples, out):  # each stratum keeps its best
        best = {"xray": 2.5, "ct": 7.5, "dermoscopy": 4.75}[s.modality.value]
        assert d.keep == (s.reward.total >= best)
    x = next(d for s, d in zip(samples, out) if s.reward.total == 4.5)
    assert x.reason == "in_top_k: rank 1 of 10 in xray by reward 4.500 (k=5 of 20)"
    facts = json.loads((ctx.work_dir / "mix-top_k.json").read_text())
    assert facts["filter"] == "top_k" and (facts["in"], facts["kept"]) == (40, 20)
    assert facts["stratify_by"] == ["modality"]
    assert facts["by"]["modality"] == {"before": {"ct": 20, "dermoscopy": 10, "xray": 10},
                                       "after": {"ct": 10, "dermoscopy": 5, "xray": 5}}
    assert facts["by"]["dataset"]["after"] == {"HAM10000": 5, "PneumoniaMNIST": 5, "TotalSegmentator": 10}
    assert facts["by"]["question_type"]["after"] == {"anatomy_identification": 10, "disease_diagnosis": 10}
    assert facts["strata"] == {"ct": {"in": 20, "kept": 10}, "dermoscopy": {"in": 10, "kept": 5},
                               "xray": {"in": 10, "kept": 5}}


def test_top_k_mix_file_also_shows_the_shift_without_strata(registry, ctx):
    samples = corpus()
    registry.create("filter", "top_k", {"k": 10}).apply(samples, [], ctx)
    facts = json.loads((ctx.work_dir / "mix-top_k.json").read_text())
    assert facts["by"]["modality"]["after"] == {"ct": 10, "dermoscopy": 0, "xray": 0}
    assert "strata" not in facts and facts["stratify_by"] == []


def test_top_k_two_fields_and_rounding(registry, ctx):
    samples = corpus()
    out = registry.create("filter", "top_k", {"k": 7, "stratify_by": ["question_type", "dataset"]}).apply(
        samples, [], ctx)
    # 7 of 40: CT 20 -> 3.5, X-ray 10 -> 1.75, derm 10 -> 1.75: floors 3, 1, 1 (sum 5); remainders
    # 0.5, 0.75, 0.75 -> the two 0.75 strata get one more: 3, 2, 2
    assert kept_by(samples, out, "dataset") == {"TotalSegmentator": 3, "PneumoniaMNIST": 2, "HAM10000": 2}
    facts = json.loads((ctx.work_dir / "mix-top_k.json").read_text())
    assert facts["strata"]["disease_diagnosis/HAM10000"] == {"in": 10, "kept": 2}


def diagnoses():
    """40 dermoscopy diagnoses: 30 "melanocytic nevus" scored high (5..9.35), 10 melanoma written in
    three spellings scored low (0..4.5): a reward model that trusts the common diagnosis more."""
    def one(i, answer, reward):
        return VQASample(images=(ImageRef(path=f"{i}.png", root="/d", sha256=f"{i:064x}"),),
                         question=f"Diagnosis {i}?", options=("melanocytic nevus", "dermatofibroma", "melanoma" if "nevus" in answer else answer),
                         answer=answer, modality=Modality.DERMOSCOPY, question_type=QT.DISEASE_DIAGNOSIS,
                         provenance=Provenance(source_dataset="HAM10000"), reward=RewardBreakdown(total=reward))

    out = [one(i, "melanocytic nevus", 5 + 0.15 * i) for i in range(30)]
    out += [one(100 + i, ("melanoma", "Melanoma", "melanoma  in situ")[i % 3], 0.5 * i) for i in range(10)]
    random.Random(1).shuffle(out)
    return out


def test_stratify_by_answer_keeps_the_class_balance(registry, ctx, tmp_path):
    from medgr2.report import _mix

    samples = diagnoses()
    plain = registry.create("filter", "top_k", {"fraction": 0.5, "stratify_by": ["question_type"]})
    assert kept_by(samples, plain.apply(samples, [], ctx), "answer") == {"melanocytic nevus": 20}
    facts = json.loads((ctx.work_dir / "mix-top_k.json").read_text())
    assert facts["by"]["answer"] == {"before": {"melanocytic nevus": 30, "melanoma": 7, "melanoma in situ": 3},
                                     "after": {"melanocytic nevus": 20, "melanoma": 0, "melanoma in situ": 0}}
    balanced = registry.create("filter", "top_k", {"fraction": 0.5, "stratify_by": ["question_type", "answer"]})
    out = balanced.apply(samples, [], ctx)
    # case and spacing folded: "melanoma" + "Melanoma" is one stratum of 7, "melanoma  in situ" one of 3
    assert kept_by(samples, out, "answer") == {"melanocytic nevus": 15, "melanoma": 4, "melanoma in situ": 1}
    assert {s.reward.total for s, d in zip(samples, out) if d.keep and "situ" in s.answer} == {4.0}  # its best of 1.0, 2.5, 4.0
    html = _mix(tmp_path)  # ctx.work_dir is tmp_path / "filter", as a cycle's filter stage
    assert "top_k: 40 → 20, stratified by question_type, answer" in html
    assert "<td>melanoma</td><td>7 (17.5 %)</td><td>4 (20.0 %)</td>" in html
    assert _mix(tmp_path / "no-such-cycle") == ""


def test_threshold_stratified_is_a_per_stratum_quantile(registry, ctx):
    samples = corpus()
    plain = registry.create("filter", "threshold", {"tau": 7.0}).apply(samples, [], ctx)
    assert kept_by(samples, plain) == {"ct": 11}  # 7.25 .. 9.75
    flt = registry.create("filter", "threshold", {"tau": 7.0, "stratify_by": ["modality"]})
    out = flt.apply(samples, [], ctx)
    # 11 of 40 above tau -> 11 * (10, 20, 10) / 40 = 2.75, 5.5, 2.75 -> floors 2, 5, 2 (sum 9); the two
    # 0.75 remainders get one more (ties: larger stratum, then name): dermoscopy, xray -> 3, 5, 3
    assert kept_by(samples, out) == {"xray": 3, "ct": 5, "dermoscopy": 3}
    assert {d.reason.split(":")[0] for d in out} == {"in_stratum_share", "outside_stratum_share"}
    top_x = next(d for s, d in zip(samples, out) if s.reward.total == 4.5)
    assert top_x.keep and "rank 1 of 10 in xray" in top_x.reason and "11 of 40 above tau 7" in top_x.reason
    floored = registry.create("filter", "threshold",
                              {"tau": 7.0, "stratify_by": ["modality"], "min_reward": 4.0})
    out = floored.apply(samples, [], ctx)
    assert kept_by(samples, out) == {"xray": 1, "ct": 5, "dermoscopy": 3}  # X-ray 3.5 and 4.0 are <= 4
    assert sum(d.reason.startswith("below_floor") for d in out) == 2
    facts = json.loads((ctx.work_dir / "mix-threshold.json").read_text())
    assert facts["by"]["modality"]["after"] == {"ct": 5, "dermoscopy": 3, "xray": 1}


def test_rand_k_stratified_exact_counts_and_seeded(registry, ctx, tmp_path):
    samples = corpus()
    opts = {"fraction": 0.25, "stratify_by": ["modality"], "seed": 4}
    a = registry.create("filter", "rand_k", opts).apply(samples, [], ctx)
    b = registry.create("filter", "rand_k", opts).apply(samples, [], ctx)
    c = registry.create("filter", "rand_k", {**opts, "seed": 5}).apply(samples, [], ctx)
    assert a == b and [d.keep for d in a] != [d.keep for d in c]
    # 10 of 40: 2.5, 5, 2.5 -> 2, 5, 2 + one for the tie at .5 (larger stratum first, then name: dermoscopy)
    assert kept_by(samples, a) == kept_by(samples, c) == {"xray": 2, "ct": 5, "dermoscopy": 3}
    assert "random draw of 5 of 20 in ct (10 of 40 in all; seed 4)" in next(
        d.reason for s, d in zip(samples, a) if s.modality is Modality.CT)
    matched = registry.create("filter", "rand_k", {"match_tau": 7.0, "stratify_by": ["modality"], "seed": 1})
    assert kept_by(samples, matched.apply(samples, [], ctx)) == {"xray": 3, "ct": 5, "dermoscopy": 3}
    facts = json.loads((ctx.work_dir / "mix-rand_k.json").read_text())
    assert facts["kept"] == 11 and facts["strata"]["ct"] == {"in": 20, "kept": 5}


def test_stratify_options_are_validated(registry):
    with pytest.raises(OptionsError, match="stratify_by"):
        registry.create("filter", "top_k", {"k": 3, "stratify_by": ["organ"]})
    with pytest.raises(OptionsError, match="names a field twice"):
        registry.create("filter", "rand_k", {"k": 3, "stratify_by": ["modality", "modality"]})
    with pytest.raises(OptionsError, match="min_reward applies only with stratify_by"):
        registry.create("filter", "threshold", {"tau": 3, "min_reward": 1})


def test_stratified_selection_in_the_filter_stage_funnel(registry, tmp_path):
    from medgr2.stages.filter import apply_filters

    samples = corpus()
    ctx = StageContext(work_dir=tmp_path / "stage", seed=0, cycle=1, registry=registry)
    flt = registry.create("filter", "top_k", {"fraction": 0.5, "stratify_by": ["dataset"]})
    kept, _ = apply_filters([("top_k", flt)], samples, [], ctx)
    assert Counter(s.provenance.source_dataset for s in kept) == {
        "TotalSegmentator": 10, "PneumoniaMNIST": 5, "HAM10000": 5}
    funnel = json.loads((ctx.work_dir / "funnel.json").read_text())
    assert funnel["steps"][0]["kept_by_reason"] == {"in_top_k": 20}
    assert json.loads((ctx.work_dir / "mix-top_k.json").read_text())["kept"] == 20
