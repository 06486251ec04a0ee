"""The data stage: merging sources, splits, summaries, and the OmniMedVQA export round trip."""

from __future__ import annotations

from medgr2.interfaces import StageContext
from medgr2.stages.seed import export_omnimedvqa, load_seed, summarize
from medgr2_datasets.fixtures import write_omnimedvqa_fixture


def _key(s):
    return (s.question, s.options, s.answer, s.modality, s.question_type, s.rationale, s.split)


def test_omnimedvqa_export_round_trip(tmp_path, registry):
    src = write_omnimedvqa_fixture(tmp_path / "in", n_per_dataset=5)
    seed = load_seed([{"name": "omnimedvqa", "options": {"root": str(src)}}], registry)
    result = export_omnimedvqa(seed.samples, tmp_path / "out", registry)
    assert result.samples == len(seed.samples) == 30 and not result.rejects
    assert (tmp_path / "out" / "QA_information" / "Open-access" / "Brain Tumor MRI.json").is_file()
    back = load_seed([{"name": "omnimedvqa", "options": {"root": str(tmp_path / "out")}}], registry)
    assert sorted(map(_key, back.samples)) == sorted(map(_key, seed.samples))
    assert all(len(s.images[0].sha256) == 64 for s in back.samples)


def test_generated_questions_round_trip_through_export(tmp_path, registry):
    seed = load_seed([{"name": "demo", "options": {"packages": ["skimage", "pydicom"]}}], registry)
    gen = registry.create("generator", "labels", {"per_item": 5, "seed": 1})
    samples = gen.generate(seed.items, StageContext(work_dir=tmp_path)).samples
    assert len(samples) >= 15 and len({s.modality for s in samples}) >= 4
    result = export_omnimedvqa(samples, tmp_path / "out", registry)
    assert result.samples == len(samples) and not result.rejects
    back = load_seed([{"name": "omnimedvqa", "options": {"root": str(tmp_path / "out")}}], registry)
    assert sorted(map(_key, back.samples)) == sorted(map(_key, samples))


def test_load_seed_merges_and_drops_duplicates(tmp_path, registry):
    src = write_omnimedvqa_fixture(tmp_path, n_per_dataset=2)
    specs = [{"name": "demo"}, {"name": "omnimedvqa", "options": {"root": str(src)}}, {"name": "demo"}]
    seed = load_seed(specs, registry)
    demo = load_seed([{"name": "demo"}], registry)
    omni = load_seed(specs[1:2], registry)  # a benchmark also yields seed items: one per distinct train image
    assert len(omni.items) > 0 and len(seed.items) == len(demo.items) + len(omni.items)
    assert len(seed.samples) == 12
    assert sum(r.reason == "duplicate" for r in seed.rejects) == len(demo.items)
    assert {it.split for it in seed.items} == {"train", "val", "test"}
    summary = summarize(seed)
    assert summary["total"] == len(seed.items) and sum(summary["by_modality"].values()) == summary["total"]
