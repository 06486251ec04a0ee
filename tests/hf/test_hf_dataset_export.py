"""A run's sample sets export as a Hugging Face dataset: Parquet + ``Image`` feature + a dataset card.

The kept set is built from the quickstart's own seed (the offline ``demo`` corpus through the
``labels`` generator: DICOM images read from installed packages) plus NIfTI volume slices, NPZ
frames and a PNG, the loaders that did not decode through ``datasets.Image`` before.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medgr2.cli import build_app
from medgr2.data import ImageRef, Modality, Provenance, RewardBreakdown, VQASample
from medgr2.images import open_image
from medgr2.store import write_jsonl

pytest.importorskip("datasets")


def cli(*args: str):
    return CliRunner().invoke(build_app(list(args)), list(args))


def _volume_and_frames(root: Path) -> list[VQASample]:
    """Samples over slices of a NIfTI volume, frames of an NPZ array and one PNG, written in ``root``."""
    import nibabel as nib
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    volume = rng.normal(0, 300, size=(24, 20, 6)).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(root / "ct.nii.gz"))
    np.savez(root / "mnist.npz", train_images=rng.integers(0, 255, size=(5, 28, 28), dtype=np.uint8))
    Image.new("L", (40, 30), 128).save(root / "gray.png")
    refs = [ImageRef(path="ct.nii.gz", root=str(root), loader="nifti", frame=k, modality=Modality.CT)
            for k in range(3)]
    refs += [ImageRef(path="mnist.npz#train_images", root=str(root), loader="npz", frame=k, modality=Modality.XRAY)
             for k in range(4)]
    refs.append(ImageRef(path="gray.png", root=str(root), loader="file", modality=Modality.XRAY))
    out = []
    for i, ref in enumerate(refs):
        out.append(VQASample(
            images=(ref,), question=f"Image {i}: what is the imaging modality?", options=("CT", "X-ray", "MRI"),
            answer="CT" if ref.loader == "nifti" else "X-ray", modality=ref.modality, split="train",
            provenance=Provenance(source_dataset="TotalSegmentator" if ref.loader == "nifti" else "PneumoniaMNIST",
                                  generator="labels", prompt_strategy="labels")))
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """``runs/demo`` with a kept set (scored by an R_φ version), the config's filters and a funnel."""
    from medgr2.interfaces import StageContext
    from medgr2.plugins import load_registry
    from medgr2.stages.seed import load_seed

    base = tmp_path_factory.mktemp("hfexport")
    registry = load_registry()
    seed = load_seed([{"name": "demo"}], registry)
    with tempfile.TemporaryDirectory() as work:
        demo = list(registry.create("generator", "labels", {}).generate(
            list(seed.items), StageContext(work_dir=Path(work), registry=registry)).samples)
    assert demo, "the demo corpus gave no samples (is the data extra installed?)"
    kept = [s.model_copy(update={"reward": RewardBreakdown(total=7.5, model_version="minilm-v001-abcd")})
            for s in [*demo, *_volume_and_frames(base / "images")]]
    run = base / "runs" / "demo"
    write_jsonl(run / "cycle-001" / "filter" / "kept.jsonl", kept)
    write_jsonl(run / "cycle-001" / "generate" / "samples.jsonl", kept)
    (run / "cycle-001" / "filter" / "funnel.json").write_text(json.dumps({"in": len(kept) + 5, "kept": len(kept)}))
    (run / "config.yaml").write_text("filters:\n  steps:\n  - name: threshold\n    options: {tau: 5.0}\n"
                                     "  - name: dedup\n    options: {}\n")
    return run


def test_kept_set_exports_to_parquet_and_every_image_decodes(run_dir, tmp_path):
    from datasets import Image, load_dataset

    from medgr2.plugins import load_registry
    from medgr2.store import read_jsonl

    kept = read_jsonl(run_dir / "cycle-001" / "filter" / "kept.jsonl", VQASample)
    out = tmp_path / "export"
    result = cli("data", "export", str(out), "--run", str(run_dir), "--set", "kept", "--format", "parquet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["samples"] == len(kept) == summary["images_decoded"]
    assert set(summary["by_loader"]) == {"pkg", "nifti", "npz", "file"}

    ds = load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train",
                      cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds.features["image"], Image) and len(ds) == len(kept)
    registry = load_registry()
    decoded = Counter()
    for row, sample in zip(ds, kept, strict=True):
        image = row["image"]
        image.load()  # decodes the PNG bytes
        assert image.size[0] > 0 and row["id"] == sample.id and row["answer"] == sample.answer
        assert VQASample.model_validate_json(row["sample_json"]) == sample
        ref = sample.images[0]
        if ref.loader in ("nifti", "npz"):  # the very pixels the loader gives
            assert np.array_equal(np.asarray(image), np.asarray(open_image(ref, registry))), ref
        decoded[ref.loader] += 1
    assert sum(decoded.values()) == len(kept)
    assert decoded == Counter(s.images[0].loader for s in kept)  # every image decoded, whatever its loader
    assert {"nifti", "npz", "file", "pkg"} <= set(decoded) and decoded["nifti"] >= 3 and decoded["npz"] >= 4
    print(f"\ndecoded {sum(decoded.values())} of {len(kept)} images: {dict(decoded)}")

    card = (out / "README.md").read_text(encoding="utf-8")
    assert "task_categories:\n- \"visual-question-answering\"" in card and "path: data/train-*.parquet" in card
    assert f"{len(kept)} multiple-choice VQA samples" in card
    assert "| labels |" in card and "minilm-v001-abcd" in card  # generator, prompt strategy, R_φ version
    assert '"tau": 5.0' in card and '"kept":' in card  # filters and funnel from the run
    assert "| TotalSegmentator | Apache-2.0 |" in card and "| PneumoniaMNIST | CC BY 4.0 (MedMNIST) |" in card
    assert "| demo | unknown" in card


def test_other_sets_a_samples_file_and_clear_errors(run_dir, tmp_path):
    from datasets import load_dataset

    out = tmp_path / "gen"
    r = cli("data", "export", str(out), "--run", str(run_dir), "--set", "generated", "--format", "parquet",
            "--hf-split", "validation", "--licence", "demo=BSD-3-Clause (pydicom test files)")
    assert r.exit_code == 0, r.output
    assert (out / "data" / "validation-00000-of-00001.parquet").is_file()
    assert "| demo | BSD-3-Clause (pydicom test files) |" in (out / "README.md").read_text(encoding="utf-8")

    samples = run_dir / "cycle-001" / "filter" / "kept.jsonl"
    r = cli("data", "export", str(tmp_path / "file"), "--samples", str(samples), "--format", "parquet")
    assert r.exit_code == 0, r.output
    loaded = load_dataset(str(tmp_path / "file"), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(loaded) == len(samples.read_text().splitlines())

    r = cli("data", "export", str(tmp_path / "x"), "--run", str(run_dir), "--set", "eval", "--format", "parquet")
    assert r.exit_code != 0 and "no 'eval' set" in r.output and "kept" in r.output
    r = cli("data", "export", str(tmp_path / "x"), "--run", str(run_dir), "--samples", str(samples))
    assert r.exit_code != 0 and "exactly one of" in r.output
    r = cli("data", "export", str(tmp_path / "x"), "--run", str(run_dir), "--push-to-hub", "me/ds")
    assert r.exit_code != 0 and "--format parquet" in r.output


def test_an_image_that_does_not_decode_is_named(tmp_path):
    from medgr2.hub import export_parquet

    bad = VQASample(images=(ImageRef(path="missing.png", root=str(tmp_path), loader="file"),),
                    question="What is shown?", options=("a", "b"), answer="a")
    with pytest.raises(ValueError, match=r"sample .*missing.png.*loader 'file'"):
        export_parquet([bad], tmp_path / "out")


def test_push_to_hub_only_behind_the_flag_and_uploads_the_folder(run_dir, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo",
                        lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder",
                        lambda self, **kw: calls.append(("upload", kw["repo_id"], kw)))
    r = cli("data", "export", str(tmp_path / "a"), "--run", str(run_dir), "--format", "parquet")
    assert r.exit_code == 0 and calls == []
    r = cli("data", "export", str(tmp_path / "b"), "--run", str(run_dir), "--format", "parquet",
            "--push-to-hub", "me/medgr2-kept")
    assert r.exit_code == 0, r.output
    assert [c[0] for c in calls] == ["create", "upload"]
    assert calls[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert calls[1][2]["folder_path"] == str(tmp_path / "b") and calls[1][2]["repo_type"] == "dataset"
    assert json.loads(r.output)["hub_url"] == "https://huggingface.co/datasets/me/medgr2-kept"


@pytest.mark.data
@pytest.mark.parametrize("preset", ["pneumoniamnist", "totalsegmentator", "busi", "nct-crc"])
def test_real_shared_data_exports_and_every_image_decodes(preset, shared_data, tmp_path):
    """NPZ frames (PneumoniaMNIST), NIfTI slices (TotalSegmentator), PNG (BUSI), TIFF (NCT-CRC)."""
    from datasets import load_dataset
    from medgr2_datasets.presets import preset_spec

    from medgr2.hub import export_parquet
    from medgr2.interfaces import StageContext
    from medgr2.plugins import load_registry
    from medgr2.stages.seed import load_seed

    registry = load_registry()
    spec = preset_spec(preset, shared_data)
    spec["options"]["limit"] = 30
    seed = load_seed([spec], registry)
    samples = list(registry.create("generator", "labels", {}).generate(
        list(seed.items), StageContext(work_dir=tmp_path / "gen", registry=registry)).samples)[:40]
    assert samples
    result = export_parquet(samples, tmp_path / "export", registry)
    ds = load_dataset("parquet", data_files=str(tmp_path / "export" / "data" / "*.parquet"), split="train",
                      cache_dir=str(tmp_path / "cache"))
    decoded = 0
    for row in ds:
        row["image"].load()
        decoded += 1
    assert decoded == len(samples) == result.images_decoded
    print(f"\n{preset}: decoded {decoded} of {len(samples)} images ({result.by_loader})")
