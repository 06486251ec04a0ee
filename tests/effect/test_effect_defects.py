"""The ``labels`` defect model: exact counts per kind, what each kind changes, provenance, and that
R_phi's input and the filters never see the defect kind."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from medgr2.data import ImageRef, Modality, RewardBreakdown, RewardInput, SeedItem
from medgr2.interfaces import StageContext
from medgr2_datasets.defects import CONFUSABLE, DEFECT_KINDS, PROBES, SUPPORT, defect_of

RATES = {"wrong_confusable": 0.2, "contradicting_rationale": 0.1, "unanswerable": 0.1,
         "bad_rationale": 0.1, "bad_options": 0.1}


def item(i, dataset, modality, **labels):
    return SeedItem(id=f"{dataset}:{i}", dataset=dataset, modality=modality, labels=labels,
                    image=ImageRef(path=f"{i}.png", root="/r", sha256=f"{i:064x}", modality=modality),
                    subject_id=f"s{i // 2}", split="train")


def corpus():
    dx = ["nv", "mel", "bkl", "bcc"]
    items = [item(i, "HAM10000", Modality.DERMOSCOPY, diagnosis=dx[i % 4], age=str(25 + i), sex="mf"[i % 2])
             for i in range(40)]
    items += [item(100 + i, "PneumoniaMNIST", Modality.XRAY, diagnosis=["normal", "pneumonia"][i % 2])
              for i in range(40)]
    items += [item(200 + i, "TotalSegmentator", Modality.CT, organs="liver, spleen", body_part="abdomen")
              for i in range(20)]
    return items


def run(registry, tmp_path, **options):
    gen = registry.create("generator", "labels", {"per_item": 2, "seed": 5, **options})
    return gen.generate(corpus(), StageContext(work_dir=tmp_path, seed=0, cycle=1))


def test_defaults_record_nothing_and_change_nothing(registry, tmp_path):
    clean = run(registry, tmp_path).samples
    zero = run(registry, tmp_path, defects={k: 0.0 for k in DEFECT_KINDS}).samples
    def dump(samples):
        return [s.model_dump(exclude={"provenance": {"created_at"}}) for s in samples]

    assert dump(clean) == dump(zero)
    assert all(defect_of(s) is None for s in clean)
    assert "defects" not in run(registry, tmp_path).ledger.extra


def test_exact_counts_disjoint_kinds_and_what_each_changes(registry, tmp_path):
    clean = run(registry, tmp_path, closing_share=0.5).samples
    res = run(registry, tmp_path, defects=RATES, closing_share=0.5)
    spoiled = res.samples
    n = len(clean)
    assert len(spoiled) == n and n >= 150
    want = {k: round(n * r) for k, r in RATES.items()}
    kinds = Counter(defect_of(s) for s in spoiled)
    assert kinds == {**want, "none": n - sum(want.values())}
    assert res.ledger.extra["defects"] == dict(kinds)
    by_source = {(c.provenance.source_id, c.provenance.raw["kind"]): c for c in clean}
    for c, s in zip(clean, spoiled):  # order kept; each defect changes only what it says
        kind = defect_of(s)
        assert s.provenance.source_id == c.provenance.source_id and s.images == c.images
        assert s.modality == c.modality
        if kind == "none":
            assert s.model_dump(exclude={"provenance"}) == c.model_dump(exclude={"provenance"})
        elif kind == "wrong_confusable":
            assert s.answer != c.answer and s.provenance.raw["true_answer"] == c.answer
            assert s.question == c.question and s.answer in s.options
            # the style of the sample it spoils: the closing sentence, for the wrong answer, iff it had one
            assert s.rationale.endswith(SUPPORT.format(wrong=s.answer)) == \
                c.rationale.endswith(SUPPORT.format(wrong=c.answer))
            assert not re.search(rf"\b{re.escape(c.answer)}\b", s.rationale)
            confusable = [x.lower() for x in CONFUSABLE.get(c.answer.lower(), ())]
            if confusable:
                assert s.answer.lower() == confusable[0] or s.answer.lower() in confusable
        elif kind == "contradicting_rationale":
            assert (s.answer, s.options, s.question) == (c.answer, c.options, c.question)
            others = [o for o in s.options if o != s.answer]
            assert any(o in s.rationale for o in others) and s.rationale.endswith(f"answer is {s.answer}.")
        elif kind == "unanswerable":
            probe = next(p for p in PROBES if p[3] == s.question)
            assert probe[0] is not s.modality and s.provenance.raw["asks_about"] == probe[0].value
            assert set(s.options) <= set(probe[4]) and s.answer in s.rationale
        elif kind == "bad_rationale":
            assert (s.answer, s.options) == (c.answer, c.options) and s.rationale != c.rationale
            assert s.provenance.raw["how"] in ("truncated", "scrambled")
            if s.provenance.raw["how"] == "scrambled":
                words = sorted(w.strip(".,;:").lower() for w in c.rationale.split())
                assert sorted(s.rationale.split()) == words
            else:
                assert c.rationale.startswith(s.rationale) and len(s.rationale) < len(c.rationale)
        elif kind == "bad_options":
            assert s.answer == c.answer and s.options != c.options and s.answer in s.options
            if s.provenance.raw["how"] == "duplicated":
                assert f"possible {s.answer}" in s.options
            else:
                assert not set(s.options) - {s.answer} & set(c.options)
    assert by_source  # the clean run covers every source
    hows = Counter(s.provenance.raw.get("how") for s in spoiled
                   if defect_of(s) in ("bad_rationale", "bad_options"))
    assert set(hows) == {"truncated", "scrambled", "implausible", "duplicated"}


def test_closing_share_ends_that_share_of_rationales_with_the_confident_sentence(registry, tmp_path):
    plain = run(registry, tmp_path).samples
    styled = run(registry, tmp_path, closing_share=0.5).samples
    closing = [s.rationale.endswith(SUPPORT.format(wrong=s.answer)) for s in styled]
    assert 0.35 < sum(closing) / len(closing) < 0.65 and not any(
        p.rationale.endswith(SUPPORT.format(wrong=p.answer)) for p in plain)
    for p, s, c in zip(plain, styled, closing, strict=True):  # only the rationale's end differs
        assert s.rationale == p.rationale + (SUPPORT.format(wrong=p.answer) if c else "")
        assert s.model_dump(exclude={"rationale", "provenance"}) == p.model_dump(exclude={"rationale", "provenance"})
    spoiled = run(registry, tmp_path, defects=RATES, closing_share=0.5).samples
    wrong = [s for s in spoiled if defect_of(s) == "wrong_confusable"]
    with_closing = sum(s.rationale.endswith(SUPPORT.format(wrong=s.answer)) for s in wrong)
    assert 0 < with_closing < len(wrong)  # the sentence no longer marks the wrong answers


def test_label_noise_is_recorded_and_not_drawn_twice(registry, tmp_path):
    res = run(registry, tmp_path, label_noise=0.2, defects={"bad_rationale": 0.3})
    n = len(res.samples)
    kinds = Counter(defect_of(s) for s in res.samples)
    assert kinds["label_noise"] == round(0.2 * n) and kinds["bad_rationale"] == round(0.3 * n)
    for s in res.samples:
        assert ("noisy" in s.tags) == (defect_of(s) == "label_noise")
        if "noisy" in s.tags:
            assert s.provenance.raw["true_answer"] != s.answer


def test_deterministic_and_seed_dependent(registry, tmp_path):
    a = run(registry, tmp_path, defects=RATES).samples
    b = run(registry, tmp_path, defects=RATES).samples
    c = run(registry, tmp_path, seed=6, defects=RATES).samples
    assert [s.id for s in a] == [s.id for s in b]
    assert [defect_of(s) for s in a] != [defect_of(s) for s in c]


def test_rates_are_validated(registry):
    from medgr2.registry import OptionsError

    with pytest.raises(OptionsError, match="sum to 1.2 > 1"):
        registry.create("generator", "labels", {"defects": {"wrong_confusable": 0.7, "bad_options": 0.5}})
    with pytest.raises(OptionsError, match="wrong_confusabel|extra"):
        registry.create("generator", "labels", {"defects": {"wrong_confusabel": 0.1}})


# ------------------------------------------------------------------ R_phi and filters never see it

def _relabel(samples, kind_of):
    """The same samples with the recorded defect kinds replaced (or removed when kind_of gives None)."""
    out = []
    for s in samples:
        hidden = ("defect", "true_answer", "how", "asks_about")
        raw = {k: v for k, v in s.provenance.raw.items() if k not in hidden}
        if kind_of(s) is not None:
            raw["defect"] = kind_of(s)
        out.append(s.model_copy(update={"provenance": s.provenance.model_copy(update={"raw": raw})}))
    return out


def test_reward_input_and_filters_ignore_the_defect_kind(registry, tmp_path):
    from medgr2.stages.filter import apply_filters

    spoiled = run(registry, tmp_path, defects=RATES).samples
    scored = [s.model_copy(update={"reward": RewardBreakdown(total=float(i % 17) - 6.0)})
              for i, s in enumerate(spoiled)]
    stripped = _relabel(scored, lambda s: None)
    flipped = _relabel(scored, lambda s: "none" if defect_of(s) != "none" else "wrong_confusable")
    assert [defect_of(s) for s in stripped] == [None] * len(scored)
    for a, b, c in zip(scored, stripped, flipped):
        assert RewardInput.from_sample(a) == RewardInput.from_sample(b) == RewardInput.from_sample(c)
        assert "defect" not in RewardInput.from_sample(a).model_dump_json()
    steps = [
        {"threshold": {"tau": 0.0}}, {"threshold": {"tau": 0.0, "stratify_by": ["modality"]}},
        {"top_k": {"fraction": 0.5}},
        {"top_k": {"fraction": 0.5, "stratify_by": ["question_type", "dataset"]}},
        {"rand_k": {"fraction": 0.5, "stratify_by": ["modality"]}}, {"dedup": {"mode": "exact"}},
    ]
    for step in steps:
        (name, opts), = step.items()
        results = []
        for i, variant in enumerate((scored, stripped, flipped)):
            flt = registry.create("filter", name, opts)
            ctx = StageContext(work_dir=tmp_path / f"{name}-{i}", seed=3, cycle=1, registry=registry)
            kept, decisions = apply_filters([(name, flt)], variant, [], ctx)
            results.append(([s.id for s in kept], [d.model_dump() for d in decisions]))
        assert results[0] == results[1] == results[2], step
