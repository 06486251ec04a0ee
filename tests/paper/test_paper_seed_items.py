"""Seed items from VQA benchmarks (issue 18): one per distinct train image, labelled with what its
questions reveal, never an image of the evaluation split; generation sends requests from them."""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict

import pytest
from medgr2_datasets.fixtures import write_omnimedvqa_fixture

from medgr2.data import QuestionType
from medgr2.interfaces import StageContext


@pytest.fixture
def omni(tmp_path):
    """OmniMedVQA layout: 6 datasets (6 modalities, one restricted), 4 images each, 3 questions per image."""
    return write_omnimedvqa_fixture(tmp_path, n_per_dataset=12, seed=1, questions_per_image=3)


def _load(registry, name, **options):
    return registry.create("dataset", name, options).load()


def _keys(samples, *splits):
    return {ref.key for s in samples if s.split in splits for ref in s.images}


def test_one_item_per_distinct_train_image_and_none_from_test(omni, registry):
    seed = _load(registry, "omnimedvqa", root=str(omni))
    assert len(seed.samples) == 72 and not seed.rejects
    splits = Counter(s.split for s in seed.samples)
    assert splits["train"] and splits["test"] and splits["val"]  # the fixture has all three splits
    train_keys, held_out = _keys(seed.samples, "train"), _keys(seed.samples, "val", "test")
    assert len(seed.items) == len(train_keys) == splits["train"] // 3  # three questions per image
    assert {it.image.key for it in seed.items} == train_keys
    assert not {it.image.key for it in seed.items} & held_out
    assert {it.split for it in seed.items} == {"train"}
    assert len({it.modality for it in seed.items}) >= 3
    assert len({it.id for it in seed.items}) == len(seed.items)


def test_item_labels_carry_modality_question_types_and_answers(omni, registry):
    seed = _load(registry, "omnimedvqa", root=str(omni))
    questions = defaultdict(list)
    for s in seed.samples:
        questions[s.images[0].key].append(s)
    for it in seed.items:
        own = questions[it.image.key]
        assert it.dataset == own[0].provenance.source_dataset and it.modality == own[0].modality
        assert it.labels["modality"] == it.modality.label and it.labels["benchmark"] == "OmniMedVQA"
        for s in own:
            assert s.question_type.label.lower() in it.labels["question_types"]
            assert f"{s.question_type.label.lower()}: {s.answer}" in it.labels["findings"]
            if s.question_type is QuestionType.DISEASE_DIAGNOSIS:
                assert it.labels["diagnosis"] == s.answer
            if s.question_type is QuestionType.LESION_GRADING:
                assert it.labels["grade"] == s.answer
            if s.question_type is QuestionType.OTHER_BIOLOGICAL_ATTRIBUTES:  # "What is the sex ...?"
                assert it.labels["sex"] == s.answer
        restricted = any("restricted" in s.tags for s in own)
        assert (it.labels.get("restricted") == "true") == restricted
    assert any(it.labels.get("restricted") == "true" for it in seed.items)  # ISIC2020 is restricted-access


def test_an_image_shared_with_a_test_question_never_becomes_an_item(omni, registry):
    """The same image file (by content) in a test question and a train question: no item for it."""
    qa = omni / "QA_information" / "Open-access" / "BUSI.json"
    records = json.loads(qa.read_text())
    shutil.copy(omni / records[0]["image_path"], omni / "Images" / "BUSI" / "copy.png")
    records[0]["split"] = "test"
    records.append({**records[1], "question_id": "extra", "image_path": "Images/BUSI/copy.png", "split": "train"})
    qa.write_text(json.dumps(records))
    seed = _load(registry, "omnimedvqa", root=str(omni))
    leaked = next(s for s in seed.samples if s.provenance.source_id == "extra")
    assert leaked.split == "train" and leaked.images[0].key in _keys(seed.samples, "test")
    assert leaked.images[0].key not in {it.image.key for it in seed.items}
    assert not {it.image.key for it in seed.items} & _keys(seed.samples, "val", "test")


def test_medr1_items_come_from_its_train_split_only(omni, registry):
    images = sorted((omni / "Images" / "Chest CT Scan").rglob("*.png"))
    shared, train_only = (p.relative_to(omni).as_posix() for p in images[:2])
    for split, rels in (("train", [shared, train_only]), ("test", [shared])):
        folder = omni / "Splits" / "modality" / split
        folder.mkdir(parents=True)
        recs = [{"image": rel, "problem": "Which organ is shown? A)Lung, B)Liver, C)Brain",
                 "solution": "<answer> A </answer>"} for rel in rels]
        (folder / f"CT(Computed Tomography)_{split}.json").write_text(json.dumps(recs))
    seed = _load(registry, "medr1", root=str(omni))
    assert Counter(s.split for s in seed.samples) == {"train": 2, "test": 1}
    assert [it.image.path for it in seed.items] == [train_only]
    item = seed.items[0]
    assert item.labels["organs"] == "Lung" and "anatomy identification: Lung" in item.labels["findings"]
    assert item.labels["benchmark"] == "Med-R1" and item.modality.value == "ct"


def test_seed_items_can_be_turned_off(omni, registry):
    on = _load(registry, "omnimedvqa", root=str(omni))
    off = _load(registry, "omnimedvqa", root=str(omni), seed_items=False)
    assert on.items and not off.items
    assert [s.id for s in off.samples] == [s.id for s in on.samples]


def test_data_inspect_counts_the_items(omni, registry):
    from medgr2.stages.seed import load_seed, summarize

    seed = load_seed([{"name": "omnimedvqa", "options": {"root": str(omni)}}], registry)
    summary = summarize(seed)
    assert summary["items"] == len(_keys(seed.samples, "train")) > 0


def test_meta_cognitive_prompt_names_the_modality_and_findings(omni, registry):
    from medgr2_generation.prompts import meta_cognitive

    seed = _load(registry, "omnimedvqa", root=str(omni))
    template = meta_cognitive()
    for it in seed.items:
        prompt = template.render(it)
        assert f"its imaging modality is {it.modality.label}" in prompt
        assert f"- findings: {it.labels['findings']}" in prompt
        assert it.dataset in prompt
        assert "- restricted" not in prompt


def test_generation_from_benchmark_items_sends_requests(omni, registry, tmp_path, monkeypatch):
    """The paper's path: benchmark images → meta-cognitive prompts to the (fake) Gemini server."""
    pytest.importorskip("google.genai")
    from medgr2.testing.fake_servers import FakeGeminiServer, default_reply
    from medgr2.stages.seed import load_seed
    from medgr2.stages.generate import select_items

    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    seed = load_seed([{"name": "omnimedvqa", "options": {"root": str(omni)}}], registry)
    items = select_items(seed, max_items=None, run_seed=0)
    assert items == [it for it in seed.items]  # every item is a train item
    open_items = [it for it in items if it.labels.get("restricted") != "true"]
    prompts: list[str] = []

    def reply(prompt: str) -> str:
        prompts.append(prompt)
        return json.dumps(default_reply(prompt))

    with FakeGeminiServer(reply=reply) as server:
        gen = registry.create("generator", "gemini", {
            "base_url": server.base_url, "model": "fake-model", "strategy": "meta_cognitive",
            "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0})
        result = gen.generate(items, StageContext(work_dir=tmp_path / "gen", registry=registry))
        assert server.bodies["images"] == len(open_items) > 0
    assert result.ledger.requests == len(open_items) and len(result.samples) == len(open_items)
    assert len(result.rejects) == len(items) - len(open_items) > 0  # restricted images never sent
    findings = {it.labels["findings"] for it in open_items}
    assert {f for f in findings if any(f in p for p in prompts)} == findings
    test_keys = _keys(seed.samples, "test")
    assert not {ref.key for s in result.samples for ref in s.images} & test_keys
    # the contamination filter, given the evaluation (test) split, finds 0 exact image overlaps
    evaluation = [s for s in seed.samples if s.split == "test"]
    context = StageContext(work_dir=tmp_path / "filter", registry=registry, eval_samples=evaluation)
    decisions = registry.create("filter", "contamination", {"image_hash": "key"}).apply(
        result.samples, result.samples, context)
    assert len(decisions) == len(result.samples)
    report = json.loads((tmp_path / "filter" / "contamination.json").read_text())
    assert report["eval_set"]["images"] == len(evaluation) > 0
    assert report["removed_by_kind"]["image"] == 0


def test_the_labels_generator_builds_questions_from_benchmark_items(omni, registry, tmp_path):
    seed = _load(registry, "omnimedvqa", root=str(omni))
    out = registry.create("generator", "labels", {}).generate(
        list(seed.items), StageContext(work_dir=tmp_path / "labels", registry=registry))
    assert out.samples
    assert {s.question_type for s in out.samples} >= {QuestionType.MODALITY_RECOGNITION,
                                                      QuestionType.DISEASE_DIAGNOSIS}


def test_hf_items_are_train_images_not_shared_with_test(tmp_path, registry):
    datasets = pytest.importorskip("datasets")
    import io

    from PIL import Image

    def png(colour):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
        return {"bytes": buf.getvalue(), "path": None}

    def rows(specs):
        return [{"image": png(c), "question": q, "options": ["pneumonia", "normal"], "answer": a,
                 "modality": "X-ray", "question_type": "disease diagnosis"} for c, q, a in specs]

    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "options": datasets.List(datasets.Value("string")),
                                  "answer": datasets.Value("string"), "modality": datasets.Value("string"),
                                  "question_type": datasets.Value("string")})
    red, blue, green = (200, 0, 0), (0, 0, 200), (0, 200, 0)
    train = rows([(red, "Q1?", "pneumonia"), (blue, "Q2?", "normal"), (blue, "Q3?", "B"), (green, "Q4?", "A")])
    test = rows([(green, "Q5?", "pneumonia")])
    folder = tmp_path / "cxr"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(train, features=features),
                          "test": datasets.Dataset.from_list(test, features=features)}).save_to_disk(str(folder))
    seed = _load(registry, "hf", path=str(folder), image_dir=str(tmp_path / "img"))
    assert len(seed.samples) == 5
    assert len(seed.items) == 2  # red and blue; green is also a test image
    assert not {it.image.key for it in seed.items} & _keys(seed.samples, "test")
    by_diagnosis = {it.labels.get("diagnosis"): it for it in seed.items}
    assert set(by_diagnosis) == {"pneumonia", "normal"}
    assert by_diagnosis["normal"].labels["findings"] == "disease diagnosis: normal"
    assert not _load(registry, "hf", path=str(folder), image_dir=str(tmp_path / "img"), seed_items=False).items


def test_a_vqa_jsonl_folder_through_the_hf_source_gives_train_items(tmp_path, registry):
    """A plain VQA JSONL (image path, question, options, answer per line; train/test files) via ``hf``."""
    pytest.importorskip("datasets")
    from PIL import Image

    folder = tmp_path / "vqa"
    (folder / "images").mkdir(parents=True)
    for name, colour in (("a", (250, 0, 0)), ("b", (0, 250, 0)), ("c", (0, 0, 250))):
        Image.new("RGB", (16, 16), colour).save(folder / "images" / f"{name}.png")
    lines = {"train": [("a", "Which organ is shown?", ["Lung", "Liver"], "Lung", "anatomy identification"),
                       ("a", "What is the diagnosis?", ["Nodule", "Normal"], "Nodule", "disease diagnosis"),
                       ("b", "What is the diagnosis?", ["Nodule", "Normal"], "Normal", "disease diagnosis"),
                       ("c", "What is the diagnosis?", ["Nodule", "Normal"], "Normal", "disease diagnosis")],
             "test": [("c", "Which organ is shown?", ["Lung", "Liver"], "Liver", "anatomy identification")]}
    for split, rows in lines.items():
        (folder / f"{split}.jsonl").write_text("".join(
            json.dumps({"image": f"images/{im}.png", "question": q, "options": o, "answer": a, "modality": "CT",
                        "question_type": t}) + "\n" for im, q, o, a, t in rows))
    seed = _load(registry, "hf", path=str(folder), image_dir=str(tmp_path / "img"))
    assert Counter(s.split for s in seed.samples) == {"train": 4, "test": 1}
    assert len(seed.items) == 2  # a and b; c is also a test image
    first = next(it for it in seed.items if it.labels.get("organs") == "Lung")
    assert first.labels["diagnosis"] == "Nodule" and first.modality.value == "ct"
    assert first.labels["findings"] == "anatomy identification: Lung; disease diagnosis: Nodule"
    assert not {it.image.key for it in seed.items} & _keys(seed.samples, "test")
