"""The ``hf`` dataset source: save_to_disk and Parquet folders, Hub ids from the offline cache, a run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from medgr2.images import open_image

datasets = pytest.importorskip("datasets")


def _png(colour) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buf, format="PNG")
    return buf.getvalue()


def _rows(n: int, offset: int = 0) -> list[dict]:
    """Rows whose answer is written as option text, letter or index; two rows share an image."""
    rows = []
    for i in range(offset, offset + n):
        sick = i % 2 == 0
        answer = ["pneumonia" if sick else "normal", "A" if sick else "B", 0 if sick else 1][i % 3]
        rows.append({"image": {"bytes": _png((200, 40, 40) if sick else (40, 40, 200 - i)), "path": None},
                     "question": f"Case {i}: what does the chest X-ray show?", "options": ["pneumonia", "normal"],
                     "answer": str(answer), "modality": "X-ray", "diagnosis": "pneumonia" if sick else "normal",
                     "patient": f"p{i // 2}"})
    return rows


def _dataset(rows: list[dict]):
    features = datasets.Features({
        "image": datasets.Image(), "question": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")), "answer": datasets.Value("string"),
        "modality": datasets.Value("string"), "diagnosis": datasets.Value("string"),
        "patient": datasets.Value("string")})
    return datasets.Dataset.from_list(rows, features=features)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A DatasetDict saved with save_to_disk: train (8 rows, one bad) and test (4 rows)."""
    train = _rows(8)
    train.append({**_rows(1, 20)[0], "answer": "tuberculosis"})  # not an option: a reject
    folder = tmp_path_factory.mktemp("hfsrc") / "cxr"
    datasets.DatasetDict({"train": _dataset(train), "test": _dataset(_rows(4, 8))}).save_to_disk(str(folder))
    return folder


def test_a_saved_dataset_dict_gives_samples_items_and_rejects(saved, tmp_path, registry):
    source = registry.create("dataset", "hf", {"path": str(saved), "image_dir": str(tmp_path / "img"),
                                               "subject_column": "patient", "label_columns": {"diagnosis": "diagnosis"}})
    seed = source.load()
    assert len(seed.samples) == 12 and len(seed.rejects) == 1
    assert seed.rejects[0].reason == "bad_row" and "tuberculosis" in seed.rejects[0].detail
    by_question = {s.question: s for s in seed.samples}
    for i in range(12):  # text, letter and index answers all resolve to the option text
        assert by_question[f"Case {i}: what does the chest X-ray show?"].answer == ("pneumonia" if i % 2 == 0
                                                                                     else "normal")
    assert {s.split for s in seed.samples if s.question.startswith(("Case 8", "Case 9"))} == {"test"}
    assert sum(s.split == "train" for s in seed.samples) == 8  # the dataset's own split names
    assert all(s.modality.value == "xray" and s.provenance.source_dataset == "cxr" for s in seed.samples)
    assert seed.samples[0].subject_id == "p0"
    # one seed item per distinct train image; the red image of the even rows is also in the test
    # split, so it never reaches a generator
    held_out = {r.key for s in seed.samples if s.split != "train" for r in s.images}
    train_images = {s.images[0].key for s in seed.samples if s.split == "train"} - held_out
    assert len(seed.items) == len(train_images) == 4 and {it.image.key for it in seed.items} == train_images
    assert all(it.split == "train" and it.labels["diagnosis"] == "normal" for it in seed.items)
    for s in seed.samples:
        image = open_image(s.images[0], registry)
        assert image.size == (32, 24)
    # the labels generator turns the items into questions
    from medgr2.interfaces import StageContext

    generated = registry.create("generator", "labels", {}).generate(
        list(seed.items), StageContext(work_dir=tmp_path / "gen", registry=registry)).samples
    assert generated


def test_bad_options_say_what_to_fix(saved, tmp_path, registry):
    with pytest.raises(FileNotFoundError, match="neither a folder nor a Hub dataset id"):
        registry.create("dataset", "hf", {"path": str(tmp_path / "nope"), "image_dir": str(tmp_path)}).load()
    with pytest.raises(ValueError, match="no image column 'picture'"):
        registry.create("dataset", "hf", {"path": str(saved), "image_column": "picture",
                                          "image_dir": str(tmp_path)}).load()
    with pytest.raises(ValueError, match=r"no split\(s\) \['validation'\]"):
        registry.create("dataset", "hf", {"path": str(saved), "splits": ["validation"],
                                          "image_dir": str(tmp_path)}).load()


def test_a_hub_id_resolves_from_the_offline_cache_only(tmp_path, registry):
    cache = tmp_path / "hub"
    snapshot = cache / "datasets--someone--tiny-cxr" / "snapshots" / ("a" * 40)
    (snapshot / "data").mkdir(parents=True)
    _dataset(_rows(6)).to_parquet(str(snapshot / "data" / "train-00000-of-00001.parquet"))
    (cache / "datasets--someone--tiny-cxr" / "refs").mkdir()
    (cache / "datasets--someone--tiny-cxr" / "refs" / "main").write_text("a" * 40)
    seed = registry.create("dataset", "hf", {"path": "someone/tiny-cxr", "cache_dir": str(cache),
                                             "image_dir": str(tmp_path / "img")}).load()
    assert len(seed.samples) == 6 and seed.samples[0].provenance.source_dataset == "someone/tiny-cxr"
    assert {s.split for s in seed.samples} <= {"train", "val", "test"}  # one split: assigned, grouped
    with pytest.raises(FileNotFoundError, match="huggingface-cli download --repo-type dataset someone/absent"):
        registry.create("dataset", "hf", {"path": "someone/absent", "cache_dir": str(cache),
                                          "image_dir": str(tmp_path / "img")}).load()


def test_a_medgr2_export_reads_back_as_the_same_samples_and_pixels(tmp_path, registry):
    from medgr2.data import ImageRef, Modality, Provenance, RewardBreakdown, VQASample
    from medgr2.hub import export_parquet

    np.savez(tmp_path / "m.npz", train_images=np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28))
    samples = [VQASample(images=(ImageRef(path="m.npz#train_images", root=str(tmp_path), loader="npz", frame=k,
                                          modality=Modality.XRAY),),
                         question=f"Frame {k}: normal or pneumonia?", options=("normal", "pneumonia"),
                         answer="normal", split="test" if k == 2 else "train",
                         provenance=Provenance(source_dataset="PneumoniaMNIST", generator="labels"),
                         reward=RewardBreakdown(total=8.0, model_version="rm-v1")) for k in range(3)]
    export_parquet(samples, tmp_path / "export", registry)
    seed = registry.create("dataset", "hf", {"path": str(tmp_path / "export"),
                                             "image_dir": str(tmp_path / "img")}).load()
    assert [s.id for s in seed.samples] == [s.id for s in samples]
    for back, original in zip(seed.samples, samples, strict=True):
        assert back.split == original.split and back.reward == original.reward
        assert back.provenance == original.provenance and back.images[0].loader == "file"
        assert np.array_equal(np.asarray(open_image(back.images[0], registry)),
                              np.asarray(open_image(original.images[0], registry)))


def test_a_run_with_a_hf_source_works_end_to_end(saved, tmp_path):
    """The loop over the real data stages (hf source, labels generator) with the fake R_φ/trainers."""
    import medgr2_datasets.plugin as data_plugin

    import medgr2
    from medgr2.data import VQASample
    from medgr2.store import read_jsonl
    from medgr2.testing import FAKE_NAME, fake_config_data, make_registry

    registry = make_registry(data_plugin)
    config = fake_config_data()
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    config.update(name="hf", runs_dir=str(tmp_path / "runs"), cycles=1)
    config["data"]["sources"] = [{"name": "hf", "options": {"path": str(saved), "image_dir": str(tmp_path / "img"),
                                                            "label_columns": {"diagnosis": "diagnosis"}}}]
    config["generation"]["generator"] = {"name": "labels", "options": {}}
    config["policy"]["model"] = str(tmp_path / "base")
    config["policy"]["grpo"] = None  # the fake trainer writes no model folder to continue from
    assert config["reward"]["model"]["name"] == FAKE_NAME
    result = medgr2.run(config, registry=registry)
    run = result.run_dir
    eval_set = read_jsonl(run / "cycle-000" / "eval-set" / "samples.jsonl", VQASample)
    generated = read_jsonl(run / "cycle-001" / "generate" / "samples.jsonl", VQASample)
    assert eval_set and generated and (run / "cycle-001" / "filter" / "kept.jsonl").is_file()
    assert all(s.images[0].root == str(tmp_path / "img") for s in generated)
    assert any(s.question.startswith(("Case 8:", "Case 9:", "Case 10:", "Case 11:")) for s in eval_set)
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    assert {"cycle-000/seed", "cycle-001/generate", "cycle-001/filter", "cycle-001/evaluate"} <= set(stages)
