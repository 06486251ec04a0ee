"""The ``labels`` question builder and grouped splits."""

from __future__ import annotations

from collections import Counter

import pytest

from medgr2.data import ImageRef, Modality, QuestionType, SeedItem
from medgr2.interfaces import StageContext
from medgr2_datasets.source_support import assign_splits, grouped_splits


def item(i, dataset="HAM10000", modality=Modality.DERMOSCOPY, **labels):
    return SeedItem(
        id=f"{dataset}:{i}",
        dataset=dataset,
        modality=modality,
        labels=labels,
        image=ImageRef(path=f"{i}.png", root="/r", sha256=f"{i:064x}", modality=modality),
        subject_id=f"s{i // 3}",
        split="train",
    )


def corpus():
    dx = ["nv", "mel", "bkl", "bcc", "akiec", "vasc", "df"]
    items = [
        item(
            i,
            diagnosis=dx[i % 7],
            age=str(20 + i),
            sex="male" if i % 2 else "female",
            site=["back", "face", "trunk"][i % 3],
            grade=f"grade {1 + i % 3}",
        )
        for i in range(42)
    ]
    items += [
        item(
            100 + i,
            "TotalSegmentator",
            Modality.CT,
            organs="liver, spleen, right kidney" if i % 2 else "left lung upper lobe, heart",
            body_part="abdomen",
        )
        for i in range(6)
    ]
    items += [
        item(200 + i, "PneumoniaMNIST", Modality.XRAY, diagnosis=["normal", "pneumonia"][i % 2])
        for i in range(4)
    ]
    return items


def gen(registry, **options):
    return registry.create("generator", "labels", options)


def ctx(tmp_path, seed=0, cycle=1):
    return StageContext(work_dir=tmp_path, seed=seed, cycle=cycle)


def test_all_five_types_valid_options_and_provenance(tmp_path, registry):
    res = gen(registry, per_item=5, max_options=4).generate(corpus(), ctx(tmp_path))
    assert not res.rejects
    assert set(Counter(s.question_type for s in res.samples)) == set(QuestionType)
    for s in res.samples:
        assert 2 <= len(s.options) <= 4 and s.answer in s.options
        assert s.answer in s.rationale
        p = s.provenance
        assert (p.generator, p.prompt_strategy, p.cycle, p.seed) == ("labels", "labels", 1, 0)
        assert p.template_hash and p.generator_version and p.source_id.startswith(p.source_dataset)
        assert s.split == "train" and s.subject_id
    dd = [s for s in res.samples if s.question_type is QuestionType.DISEASE_DIAGNOSIS]
    assert "melanocytic nevus" in {s.answer for s in dd} and "nv" not in {s.answer for s in dd}
    pn = [s for s in dd if s.provenance.source_dataset == "PneumoniaMNIST"]
    assert pn and all(set(s.options) == {"normal", "pneumonia"} for s in pn)
    organs = [s for s in res.samples if s.provenance.raw.get("kind") == "organs"]
    for s in organs:  # distractors are organs absent from the slice
        present = (
            {"liver", "spleen", "right kidney"}
            if s.answer in {"liver", "spleen", "right kidney"}
            else {"left lung upper lobe", "heart"}
        )
        assert len(set(s.options) & present) == 1
    ages = [s for s in res.samples if s.provenance.raw.get("kind") == "age"]
    assert ages and all(s.answer.endswith("years") or "older" in s.answer for s in ages)
    assert len({s.question for s in res.samples if s.question_type is QuestionType.MODALITY_RECOGNITION}) >= 3


def test_seeded_determinism_and_per_item(tmp_path, registry):
    a = gen(registry, per_item=2).generate(corpus(), ctx(tmp_path, seed=3)).samples
    b = gen(registry, per_item=2).generate(corpus(), ctx(tmp_path, seed=3)).samples
    c = gen(registry, per_item=2).generate(corpus(), ctx(tmp_path, seed=4)).samples
    assert [s.id for s in a] == [s.id for s in b] and [s.id for s in a] != [s.id for s in c]
    assert max(Counter(s.provenance.source_id for s in a).values()) == 2
    only = gen(registry, question_types=["disease_diagnosis"], max_options=2).generate(
        corpus(), ctx(tmp_path)
    )
    assert {s.question_type for s in only.samples} == {QuestionType.DISEASE_DIAGNOSIS}
    assert {len(s.options) for s in only.samples} == {2}
    assert [r.reason for r in only.rejects] == ["no_question"] * 6  # the CT slices have no diagnosis


def test_label_noise_and_class_name_override(tmp_path, registry):
    clean = gen(registry, per_item=3, seed=7).generate(corpus(), ctx(tmp_path)).samples
    noisy = gen(registry, per_item=3, seed=7, label_noise=0.25).generate(corpus(), ctx(tmp_path)).samples
    tagged = [s for s in noisy if "noisy" in s.tags]
    assert len(tagged) == round(0.25 * len(clean)) and len(noisy) == len(clean)
    for c, n in zip(clean, noisy):
        assert c.question == n.question and c.options == n.options
        assert (c.answer != n.answer) == ("noisy" in n.tags)
    named = gen(registry, question_types=["disease_diagnosis"], class_names={"nv": "common mole"})
    answers = {s.answer for s in named.generate(corpus(), ctx(tmp_path)).samples}
    assert "common mole" in answers and "melanocytic nevus" not in answers


def test_balance_classes(tmp_path, registry):
    items = [item(i, diagnosis="nv" if i < 30 else "mel") for i in range(36)]
    res = gen(registry, question_types=["disease_diagnosis"], balance_classes=True).generate(
        items, ctx(tmp_path)
    )
    assert Counter(s.answer for s in res.samples) == {"melanocytic nevus": 6, "melanoma": 6}
    capped = gen(registry, question_types=["disease_diagnosis"], max_per_class=4).generate(
        items, ctx(tmp_path)
    )
    assert Counter(s.answer for s in capped.samples) == {"melanocytic nevus": 4, "melanoma": 4}


def test_stop_event_keeps_finished_work(tmp_path, registry):
    context = ctx(tmp_path)
    context.stop.set()
    assert gen(registry).generate(corpus(), context).samples == ()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_splits_have_no_subject_overlap(seed):
    items = [item(i).model_copy(update={"split": None, "subject_id": f"p{i % 37}"}) for i in range(400)]
    out = assign_splits(items, seed)
    sides = {}
    for it in out:
        sides.setdefault(it.subject_id, set()).add(it.split)
    assert all(len(v) == 1 for v in sides.values())
    counts = Counter(grouped_splits({it.subject_id for it in items}, seed).values())
    assert counts == {"train": 29, "val": 4, "test": 4}
    assert [it.split for it in assign_splits(items, seed)] == [it.split for it in out]
    assert grouped_splits(["a", "b"], seed, {"train": 0.8, "test": 0.2}) in (
        {"a": "train", "b": "test"},
        {"a": "test", "b": "train"},
    )


def test_case_variants_and_blank_labels_do_not_break_generation(tmp_path, registry):
    items = [
        item(0, "X", diagnosis="Covid"),
        item(1, "X", diagnosis="covid"),
        item(2, "X", diagnosis="normal"),
        item(3, "X", body_part="Chest"),
        item(4, "X", diagnosis=" "),
    ]
    res = gen(registry, question_types=["disease_diagnosis", "anatomy_identification"]).generate(
        items, ctx(tmp_path)
    )
    for s in res.samples:
        assert len({o.lower() for o in s.options}) == len(s.options)
    assert {r.reason for r in res.rejects} <= {"no_question", "invalid_sample"}
    assert sum(res.ledger.rejects.values()) == len(res.rejects)
