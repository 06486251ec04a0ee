"""Fault suite, issue 19 (data rows): undecodable images, format by content, benchmark duplicates.

Rows reproduced (before -> now):

* one truncated PNG admitted by the header-only check -> the run aborted much later ("OSError:
  image file is truncated", no file named). Now every source decodes each image once at load; an
  undecodable file is a ``Reject`` (reason ``undecodable``) naming the file, and every admitted
  item decodes later. A decode error at use names the file too.
* the OmniMedVQA loader admitted 7 of 8 undecodable files (existence only) and gave ``.dcm`` the
  plain-image loader. Now: the same decode check, and DICOM (``DICM`` at byte 128) gets ``dicom``.
* a benchmark file in which two question ids share byte-identical images and text -> one question
  silently dropped as a "duplicate". Now both are kept (distinct ids), a ``content_duplicate``
  warning is reported; generated sets still deduplicate.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medgr2.data import Provenance, VQASample
from medgr2.images import ImageDecodeError, open_image
from medgr2.stages.seed import load_seed, summarize
from medgr2.testing import make_context, make_image_ref
from medgr2_datasets.loaders import package_dirs
from medgr2_datasets.probe import clear_cache, loader_for, sniff_format


@pytest.fixture(autouse=True)
def _fresh_decode_cache():
    clear_cache()
    yield
    clear_cache()


def _noise(seed: int, size: int = 48) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _dicom_bytes() -> bytes:
    dirs = package_dirs()
    if "pydicom" not in dirs:
        pytest.skip("pydicom's test files are not installed")
    return (dirs["pydicom"] / "CT_small.dcm").read_bytes()


GOOD_PNG = _encoded(_noise(1), "PNG")
GOOD_JPEG = _encoded(_noise(2), "JPEG")


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


# ------------------------------------------------------------------ row: one truncated PNG


def _folder_dataset(root: Path, n_good: int) -> None:
    for i in range(n_good):
        cls = ("benign", "malignant")[i % 2]
        (root / cls).mkdir(parents=True, exist_ok=True)
        (root / cls / f"img{i}.png").write_bytes(_encoded(_noise(10 + i), "PNG"))
    (root / "benign" / "truncated.png").write_bytes(_truncated(GOOD_PNG))


def test_truncated_png_is_a_reject_naming_the_file_and_every_admitted_image_decodes(tmp_path, registry):
    root = tmp_path / "folders"
    _folder_dataset(root, n_good=6)
    seed = load_seed([{"name": "folders", "options": {"root": str(root)}}], registry)
    assert len(seed.items) == 6
    assert [(r.id, r.reason) for r in seed.rejects] == [("benign/truncated.png", "undecodable")]
    assert "'benign/truncated.png'" in seed.rejects[0].detail and "truncated" in seed.rejects[0].detail
    assert all(open_image(it.image, registry).size == (48, 48) for it in seed.items)  # nothing crashes later
    assert all((it.image.width, it.image.height) == (48, 48) for it in seed.items)


def test_header_only_check_still_admits_it_but_the_later_error_names_the_file(tmp_path, registry):
    root = tmp_path / "folders"
    _folder_dataset(root, n_good=2)
    seed = load_seed([{"name": "folders", "options": {"root": str(root), "verify": "header"}}], registry)
    assert len(seed.items) == 3 and not seed.rejects  # the opt-out keeps the old behaviour...
    bad = next(it for it in seed.items if it.image.path.endswith("truncated.png"))
    with pytest.raises(ImageDecodeError, match=r"'benign/truncated.png'.*image file is truncated"):
        open_image(bad.image, registry)  # ...but the failure at use names the file


def test_csv_source_rejects_a_truncated_jpeg_by_record_and_file(tmp_path, registry):
    root = tmp_path / "ham"
    (root / "images").mkdir(parents=True)
    rows = [{"lesion_id": f"L{i}", "image_id": f"IMG{i}", "dx": "nv"} for i in range(5)]
    for i in range(4):
        (root / "images" / f"IMG{i}.jpg").write_bytes(_encoded(_noise(20 + i), "JPEG"))
    (root / "images" / "IMG4.jpg").write_bytes(_truncated(GOOD_JPEG))
    with open(root / "HAM10000_metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["lesion_id", "image_id", "dx"])
        w.writeheader()
        w.writerows(rows)
    seed = load_seed([{"name": "csv", "options": {"root": str(root), "preset": "ham10000",
                                                  "columns": {"diagnosis": "dx"}}}], registry)
    assert len(seed.items) == 4
    assert [(r.id, r.reason) for r in seed.rejects] == [("IMG4", "undecodable")]
    assert "'images/IMG4.jpg'" in seed.rejects[0].detail


def test_format_by_content_not_extension(tmp_path, registry):
    root = tmp_path / "mixed"
    (root / "a").mkdir(parents=True)
    (root / "a" / "png_named.jpg").write_bytes(GOOD_PNG)
    (root / "a" / "jpeg_named.png").write_bytes(GOOD_JPEG)
    (root / "a" / "dicom_named.png").write_bytes(_dicom_bytes())
    (root / "a" / "jpeg_named.dcm").write_bytes(GOOD_JPEG)
    (root / "a" / "text_named.png").write_bytes(b"<html>not an image</html>")
    assert sniff_format(root / "a" / "png_named.jpg") == "png"
    assert sniff_format(root / "a" / "dicom_named.png") == "dicom"
    seed = load_seed([{"name": "folders", "options": {"root": str(root)}}], registry)
    loaders = {Path(it.image.path).name: it.image.loader for it in seed.items}
    assert loaders == {"png_named.jpg": "file", "jpeg_named.png": "file", "dicom_named.png": "dicom",
                       "jpeg_named.dcm": "file"}
    assert [(r.id, r.reason) for r in seed.rejects] == [("a/text_named.png", "undecodable")]
    assert "no known image format by content" in seed.rejects[0].detail
    for it in seed.items:
        assert open_image(it.image, registry).mode == "RGB"
    # the ``file`` loader itself sends a DICOM to the DICOM decoder, whatever the ref says
    ref = make_image_ref("a/dicom_named.png", root=str(root), loader="file")
    assert open_image(ref, registry).size == (128, 128)


def test_dicom_source_decodes_at_load(tmp_path, registry):
    data = _dicom_bytes()
    root = tmp_path / "dcm"
    root.mkdir()
    (root / "good.dcm").write_bytes(data)
    (root / "cut.dcm").write_bytes(data[: int(len(data) * 0.8)])  # header intact, pixels cut
    seed = load_seed([{"name": "dicom", "options": {"root": str(root)}}], registry)
    assert [it.image.path for it in seed.items] == ["good.dcm"]
    assert [(r.id, r.reason) for r in seed.rejects] == [("cut.dcm", "undecodable")]
    assert "'cut.dcm'" in seed.rejects[0].detail


def test_decode_results_are_cached_by_content(tmp_path, registry, monkeypatch):
    import medgr2_datasets.probe as probe

    root = tmp_path / "same"
    (root / "x").mkdir(parents=True)
    for i in range(3):  # three names, one content
        (root / "x" / f"copy{i}.png").write_bytes(GOOD_PNG)
    (root / "x" / "bad.png").write_bytes(_truncated(GOOD_PNG))
    calls = []
    real = probe._decode
    monkeypatch.setattr(probe, "_decode", lambda *a: calls.append(a[1].path) or real(*a))
    for _ in range(2):
        seed = load_seed([{"name": "folders", "options": {"root": str(root)}}], registry)
        assert len(seed.items) == 3 and [r.reason for r in seed.rejects] == ["undecodable"]
    assert sorted(calls) == ["x/bad.png", "x/copy0.png"]


# ------------------------------------------------------------------ row: the OmniMedVQA loader


def _record(qid: str, image: str, question: str = "Which organ is shown?") -> dict:
    return {"dataset": "Faults", "question_id": qid, "question_type": "Anatomy Identification",
            "question": question, "gt_answer": "Lung", "image_path": image,
            "modality_type": "CT(Computed Tomography)", "option_A": "Lung", "option_B": "Liver"}


def _omni(root: Path, files: dict[str, bytes], records: list[dict]) -> Path:
    for name, data in files.items():
        path = root / "Images" / "Faults" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    qa = root / "QA_information" / "Open-access"
    qa.mkdir(parents=True, exist_ok=True)
    (qa / "Faults.json").write_text(json.dumps(records))
    return root


def test_omnimedvqa_rejects_each_undecodable_image_and_routes_dicom_by_content(tmp_path, registry):
    dicom = _dicom_bytes()
    bad = {
        "truncated.png": _truncated(GOOD_PNG),
        "truncated.jpg": _truncated(GOOD_JPEG),
        "empty.png": b"",
        "garbage.png": b"\x89PNG\r\n\x1a\n" + bytes(40),
        "page.jpg": b"<html>404 not found</html>",
        "text.png": b"just text",
        "cut.dcm": dicom[: int(len(dicom) * 0.8)],
        "empty.dcm": b"",
    }
    good = {"ok.png": GOOD_PNG, "ok.jpg": GOOD_JPEG, "scan.dcm": dicom, "dicom_named.png": dicom}
    files = {**bad, **good}
    records = [_record(f"q{i}", f"Images/Faults/{name}") for i, name in enumerate(files)]
    root = _omni(tmp_path / "omni", files, records)
    seed = load_seed([{"name": "omnimedvqa", "options": {"root": str(root)}}], registry)
    assert len(seed.samples) == 4
    # scan.dcm and dicom_named.png are byte-identical: both kept, one warning
    assert Counter(r.reason for r in seed.rejects) == {"undecodable": 8, "content_duplicate": 1}
    named = sorted(name for r in seed.rejects for name in bad if f"'Images/Faults/{name}'" in r.detail)
    assert named == sorted(bad)
    loaders = {Path(s.images[0].path).name: s.images[0].loader for s in seed.samples}
    assert loaders == {"ok.png": "file", "ok.jpg": "file", "scan.dcm": "dicom", "dicom_named.png": "dicom"}
    for s in seed.samples:
        assert open_image(s.images[0], registry).mode == "RGB"
    assert loader_for(root / "Images" / "Faults" / "scan.dcm") == "dicom"


def test_omnimedvqa_image_shared_by_records_is_decoded_once_and_rejected_for_each(tmp_path, registry):
    records = [_record(f"q{i}", "Images/Faults/bad.png", f"Question {i}?") for i in range(3)]
    root = _omni(tmp_path / "omni", {"bad.png": _truncated(GOOD_PNG)}, records)
    seed = load_seed([{"name": "omnimedvqa", "options": {"root": str(root)}}], registry)
    assert not seed.samples
    assert [r.id for r in seed.rejects] == ["Faults#q0", "Faults#q1", "Faults#q2"]
    assert all(r.reason == "undecodable" and "'Images/Faults/bad.png'" in r.detail for r in seed.rejects)


# ------------------------------------------------------------- row: benchmark content duplicates


def test_benchmark_keeps_two_question_ids_with_identical_content(tmp_path, registry):
    files = {"a.png": GOOD_PNG, "b.png": GOOD_PNG, "c.png": GOOD_JPEG}  # a and b: byte-identical
    records = [_record("q1", "Images/Faults/a.png"), _record("q2", "Images/Faults/b.png"),
               _record("q3", "Images/Faults/c.png")]
    root = _omni(tmp_path / "omni", files, records)
    seed = load_seed([{"name": "omnimedvqa", "options": {"root": str(root)}}], registry)
    assert sorted(s.provenance.source_id for s in seed.samples) == ["q1", "q2", "q3"]  # was q1, q3
    assert len({s.id for s in seed.samples}) == 3
    assert [(r.reason, r.id) for r in seed.rejects] == [
        ("content_duplicate", next(s.id for s in seed.samples if s.provenance.source_id == "q2"))]
    assert "Faults/q2" in seed.rejects[0].detail and "Faults/q1" in seed.rejects[0].detail
    summary = summarize(seed)
    assert (summary["samples"], summary["rejects"], summary["warnings"]) == (3, 0, 1)
    # the same benchmark listed twice: the second copy adds nothing, the denominator stays 3
    twice = load_seed([{"name": "omnimedvqa", "options": {"root": str(root)}}] * 2, registry)
    assert len(twice.samples) == 3
    assert Counter(r.reason for r in twice.rejects) == {"content_duplicate": 2, "duplicate": 3}
    # ids are stable across loads (predictions and resumes key on them)
    again = load_seed([{"name": "omnimedvqa", "options": {"root": str(root)}}], registry)
    assert [s.id for s in again.samples] == [s.id for s in seed.samples]


def test_benchmark_duplicates_across_two_sources_are_kept(tmp_path, registry):
    root1 = _omni(tmp_path / "one", {"a.png": GOOD_PNG}, [_record("q1", "Images/Faults/a.png")])
    other = tmp_path / "two"
    shutil.copytree(root1, other)
    data = json.loads((other / "QA_information/Open-access/Faults.json").read_text())
    data[0]["question_id"] = "q9"
    (other / "QA_information/Open-access/Faults.json").write_text(json.dumps(data))
    specs = [{"name": "omnimedvqa", "options": {"root": str(r)}} for r in (root1, other)]
    seed = load_seed(specs, registry)
    assert sorted(s.provenance.source_id for s in seed.samples) == ["q1", "q9"]
    question_rejects = [r for r in seed.rejects if r.id not in {i.id for i in seed.items}]
    assert [r.reason for r in question_rejects] == ["content_duplicate"]  # both questions kept, one warning
    assert len(seed.items) == 1  # the one image is one seed item (its copy from the second source is a duplicate)


def test_generated_sets_still_deduplicate(tmp_path, registry):
    ref = make_image_ref("img/0.png", sha256="ab" * 32)
    made = [VQASample(images=(ref,), question="Which organ?", options=("Lung", "Liver"), answer="Lung",
                      provenance=Provenance(generator="gemini", source_id=f"call{i}")) for i in range(2)]
    dedup = registry.create("filter", "dedup", {})
    decisions = dedup.apply(made, [], make_context(tmp_path, registry))
    assert sum(d.keep for d in decisions) == 1
