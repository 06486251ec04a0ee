"""OmniMedVQA and Med-R1 sources: the official layout with its quirks, and Med-R1 split files."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from medgr2.data import Modality, QuestionType
from medgr2_datasets.fixtures import FIXTURE_DATASETS, write_omnimedvqa_fixture
from medgr2_datasets.omnimedvqa import MedR1Source, OmniMedVQASource, parse_problem, parse_solution
from medgr2_datasets.options import MedR1Options, OmniMedVQAOptions


@pytest.fixture
def omni(tmp_path):
    return write_omnimedvqa_fixture(tmp_path, n_per_dataset=5, seed=1)


def test_fixture_loads_with_quirks(omni):
    seed = OmniMedVQASource(OmniMedVQAOptions(root=omni)).load()
    assert seed.rejects == []
    assert len(seed.samples) == 5 * len(FIXTURE_DATASETS)
    by_ds = {s.provenance.source_dataset: s.modality for s in seed.samples}
    assert by_ds == {
        "Chest CT Scan": Modality.CT,
        "Brain Tumor MRI": Modality.MRI,
        "OCT Retina": Modality.OCT,
        "Blood Cell": Modality.MICROSCOPY,
        "BUSI": Modality.ULTRASOUND,
        "ISIC2020": Modality.DERMOSCOPY,
    }
    raw = {s.provenance.source_dataset: s.provenance.raw for s in seed.samples}
    assert raw["Brain Tumor MRI"]["modality_type"] == "MR (Mag-netic Resonance Imaging)"
    assert raw["OCT Retina"]["modality_type"] == "OCT (Optical Coherence Tomography"
    assert raw["Blood Cell"]["modality_key"] == "modality"
    assert raw["ISIC2020"]["access"] == "Restricted-access"
    assert Counter(s.question_type for s in seed.samples) == {qt: 6 for qt in QuestionType}
    assert {len(s.options) for s in seed.samples} == {2, 3, 4}
    for s in seed.samples:
        assert len(s.images[0].sha256) == 64 and s.split in {"train", "val", "test"}
        assert (omni / s.images[0].path).is_file()


def test_restricted_can_be_excluded_and_splits_are_deterministic(omni):
    a = OmniMedVQASource(OmniMedVQAOptions(root=omni, include_restricted=False)).load()
    assert "ISIC2020" not in {s.provenance.source_dataset for s in a.samples}
    b1 = OmniMedVQASource(OmniMedVQAOptions(root=omni, seed=3)).load()
    b2 = OmniMedVQASource(OmniMedVQAOptions(root=omni, seed=3)).load()
    assert [(s.id, s.split) for s in b1.samples] == [(s.id, s.split) for s in b2.samples]


def test_bad_records_become_rejects(omni):
    f = omni / "QA_information" / "Open-access" / "BUSI.json"
    records = json.loads(f.read_text())
    records[0]["image_path"] = "../../etc/passwd"
    records[1]["gt_answer"] = "not an option"
    records[2]["image_path"] = "Images/BUSI/missing.png"
    records[3] = "not a record"
    f.write_text(json.dumps(records))
    (omni / "QA_information" / "Open-access" / "Broken.json").write_text("{not json")
    seed = OmniMedVQASource(OmniMedVQAOptions(root=omni)).load()
    reasons = Counter(r.reason for r in seed.rejects)
    assert reasons == {"unsafe_path": 1, "invalid_record": 2, "missing_file": 1, "unreadable_qa_file": 1}
    assert len(seed.samples) == 5 * len(FIXTURE_DATASETS) - 4


def test_missing_layout_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="QA_information"):
        OmniMedVQASource(OmniMedVQAOptions(root=tmp_path)).load()


def test_medr1_problem_parsing():
    q, opts = parse_problem("What modality is shown? A)CT, B)MRI, C)X-ray, D)Ultrasound")
    assert q == "What modality is shown?" and opts == ["CT", "MRI", "X-ray", "Ultrasound"]
    assert parse_solution("<answer> C </answer>", opts) == "X-ray"
    assert parse_solution("<answer>MRI</answer>", opts) == "MRI"
    with pytest.raises(ValueError):
        parse_solution("<answer> Z </answer>", opts)


def test_medr1_split_files(omni):
    ct = next(p for p in (omni / "Images" / "Chest CT Scan").rglob("*.png"))
    rel = ct.relative_to(omni).as_posix()
    for split, n in (("train", 3), ("test", 2)):
        d = omni / "Splits" / "modality" / split
        d.mkdir(parents=True)
        recs = [
            {
                "image": rel,
                "problem": "Which organ is shown? A)Lung, B)Liver, C)Brain",
                "solution": "<answer> A </answer>",
            }
            for _ in range(n)
        ]
        recs.append({"image": rel, "problem": "no options here", "solution": "<answer> A </answer>"})
        (d / f"CT(Computed Tomography)_{split}.json").write_text(json.dumps(recs))
    seed = MedR1Source(MedR1Options(root=omni)).load()
    assert Counter(s.split for s in seed.samples) == {"train": 3, "test": 2}
    assert {s.modality for s in seed.samples} == {Modality.CT}
    assert {s.question_type for s in seed.samples} == {QuestionType.ANATOMY_IDENTIFICATION}
    assert all(s.answer == "Lung" for s in seed.samples)
    assert Counter(r.reason for r in seed.rejects) == {"invalid_record": 2, "content_duplicate": 4}
    assert len({s.id for s in seed.samples}) == 5  # five question records, five ids (none dropped)


def test_limit_stops_across_files(omni):
    seed = OmniMedVQASource(OmniMedVQAOptions(root=omni, limit=7)).load()
    assert len(seed.samples) == 7


def test_modality_and_question_type_filters(omni):
    opts = OmniMedVQAOptions(root=omni, modalities=["ct", "mri"], question_types=["disease_diagnosis"])
    seed = OmniMedVQASource(opts).load()
    assert len(seed.samples) == 2
    assert {s.modality for s in seed.samples} == {Modality.CT, Modality.MRI}
    assert {s.question_type for s in seed.samples} == {QuestionType.DISEASE_DIAGNOSIS}
