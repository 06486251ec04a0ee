"""Image loaders (bit depths, windowing, pixel limit), DICOM privacy, and corrupt-file rejects."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from medgr2.data import ImageRef, Modality
from medgr2.images import open_image
from medgr2_datasets.loaders import ImageTooLargeError, to_uint8

PHI = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "MRN-9911-7",
    "PatientBirthDate": "19610412",
    "PatientAddress": "12 Elm Street, Springfield",
    "InstitutionName": "St Example Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "AccessionNumber": "ACC77123",
    "StudyDate": "20200301",
    "StationName": "CTSTATION42",
    "OtherPatientIDs": "ALT-5521",
    "StudyDescription": "CT ABD for Jane Doe",
}


def write_dicom(path, modality="CT", body_part="ABDOMEN", phi=PHI, rows=16, cols=16, frames=1):
    """A small uncompressed DICOM with identifying tags."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    for k, v in phi.items():
        setattr(ds, k, v)
    ds.Modality, ds.BodyPartExamined = modality, body_part
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    shape = (frames, rows, cols) if frames > 1 else (rows, cols)
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = (np.arange(np.prod(shape), dtype=np.int16).reshape(shape) * 7 % 2000).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_file_loader_handles_bit_depths_and_modes(tmp_path, registry):
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).save(tmp_path / "a.png")
    Image.new("L", (8, 6), 90).save(tmp_path / "b.png")
    Image.new("RGBA", (5, 5), (10, 20, 30, 0)).save(tmp_path / "c.png")
    Image.new("P", (5, 5)).save(tmp_path / "d.gif")
    for name in ("a.png", "b.png", "c.png", "d.gif"):
        img = open_image(ImageRef(path=name, root=str(tmp_path)), registry)
        assert img.mode == "RGB" and img.info == {}
    a = np.asarray(open_image(ImageRef(path="a.png", root=str(tmp_path)), registry))
    assert a.dtype == np.uint8 and a.min() == 0 and a.max() == 255


def test_pixel_limit_is_enforced_before_decoding(tmp_path, registry):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    ref = ImageRef(path="big.png", root=str(tmp_path))
    load = registry.create("image_loader", "file", {"max_pixels": 9_999})
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        load(ref)
    assert registry.create("image_loader", "file", {"max_pixels": 10_000})(ref).size == (100, 100)


def test_windowing():
    hu = np.array([[-1000.0, -160.0], [40.0, 240.0]])
    out = to_uint8(hu, window=(40, 400))
    assert out.tolist() == [[0, 0], [128, 255]]
    assert to_uint8(np.zeros((3, 3))).max() == 0


def test_npz_and_nifti_loaders(tmp_path, registry):
    import nibabel as nib

    np.savez(tmp_path / "m.npz", train_images=np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28))
    img = open_image(ImageRef(path="m.npz#train_images", root=str(tmp_path), loader="npz", frame=2), registry)
    assert img.size == (28, 28) and img.mode == "RGB"
    with pytest.raises(ValueError, match="out of range"):
        open_image(ImageRef(path="m.npz#train_images", root=str(tmp_path), loader="npz", frame=3), registry)
    vol = np.full((10, 12, 4), -1000, dtype=np.int16)
    vol[2:8, 3:9, 1] = 40
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    ref = ImageRef(path="v.nii.gz", root=str(tmp_path), loader="nifti", frame=1, modality=Modality.CT)
    arr = np.asarray(open_image(ref, registry))
    assert arr.shape == (12, 10, 3) and set(np.unique(arr)) == {0, 128}


def test_dicom_source_never_lets_identifying_tags_out(tmp_path, registry):
    root = tmp_path / "dicom"
    root.mkdir()
    write_dicom(root / "a.dcm")
    write_dicom(root / "b.dcm", modality="MR", body_part="HEAD", frames=3)
    (root / "notes.txt").write_text("not a dicom file")
    seed = registry.create("dataset", "dicom", {"root": str(root)}).load()
    assert [r.reason for r in seed.rejects] == ["not_dicom"]
    assert len(seed.items) == 4
    assert {it.modality for it in seed.items} == {Modality.CT, Modality.MRI}
    assert {it.labels["body_part"] for it in seed.items} == {"abdomen", "head"}
    assert len({it.subject_id for it in seed.items}) == 1  # same PatientID, pseudonymised
    dumped = json.dumps([it.model_dump(mode="json") for it in seed.items])
    for value in [*PHI.values(), "Doe", "Jane", "9911"]:
        assert value not in dumped
    for it in seed.items:
        img = open_image(it.image, registry)
        assert img.mode == "RGB" and img.info == {} and not img.getexif()


def test_demo_corpus_leaks_no_dicom_identifiers(registry):
    import pydicom

    from medgr2_datasets.loaders import resolve_pkg
    from medgr2_datasets.volumes import IDENTIFYING_DICOM_TAGS

    seed = registry.create("dataset", "demo", {}).load()
    assert not seed.rejects and len(seed.items) >= 20
    assert {
        Modality.CT,
        Modality.MRI,
        Modality.XRAY,
        Modality.ULTRASOUND,
        Modality.FUNDUS,
        Modality.MICROSCOPY,
    } <= {it.modality for it in seed.items}
    # content hashes are left out: 400+ hex digests contain any 4-digit id by chance
    dumped = json.dumps([it.model_dump(mode="json", exclude={"image": {"sha256"}}) for it in seed.items])
    checked = 0
    for it in seed.items:
        if it.image.path.endswith(".dcm"):
            ds = pydicom.dcmread(resolve_pkg(it.image.path), stop_before_pixels=True)
            for tag in IDENTIFYING_DICOM_TAGS:
                value = str(ds.get(tag) or "").strip()
                if len(value) >= 4:
                    assert value not in dumped, (tag, value)
                    checked += 1
    assert checked > 10
    assert open_image(seed.items[0].image, registry).mode == "RGB"


def test_corrupt_files_are_skipped_with_reasons(tmp_path, registry):
    root = tmp_path / "ds"
    for cls in ("benign", "malignant"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / cls / f"{cls} ({i}).png")
    (root / "benign" / "garbage.png").write_bytes(b"\x89PNG not really")
    (root / "benign" / "empty.jpg").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "malignant" / "noise.png")
    good = (root / "malignant" / "noise.png").read_bytes()
    (root / "malignant" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "malignant" / "malignant (0)_mask.png").write_bytes(good)
    seed = registry.create("dataset", "folders", {"root": str(root), "verify": "decode"}).load()
    assert len(seed.items) == 7
    assert sorted(r.id for r in seed.rejects) == [
        "benign/empty.jpg",
        "benign/garbage.png",
        "malignant/truncated.png",
    ]
    assert all(r.reason == "undecodable" and repr(r.id) in r.detail for r in seed.rejects)
    default = registry.create("dataset", "folders", {"root": str(root)}).load()  # decode is the default
    assert [r.model_dump() for r in default.rejects] == [r.model_dump() for r in seed.rejects]
    fast = registry.create("dataset", "folders", {"root": str(root), "verify": "header"}).load()
    assert {r.id for r in fast.rejects} == {"benign/empty.jpg", "benign/garbage.png"}


def test_csv_source_mapping_and_missing_images(tmp_path, registry):
    root = tmp_path / "ham"
    (root / "images").mkdir(parents=True)
    rows = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    for i in range(6):
        rows.append(f"L{i // 2},IMG{i},{'nv' if i % 2 else 'mel'},histo,{40 + i},male,back")
        if i != 5:
            Image.new("RGB", (4, 4)).save(root / "images" / f"IMG{i}.jpg")
    rows.append("L9,IMG0,nv,histo,1,female,face")
    (root / "HAM10000_metadata.csv").write_text("\n".join(rows) + "\n")
    seed = registry.create("dataset", "csv", {"root": str(root), "preset": "ham10000", "seed": 1}).load()
    assert len(seed.items) == 5
    assert sorted(r.reason for r in seed.rejects) == ["duplicate_id", "missing_file"]
    it = next(i for i in seed.items if i.id.endswith("IMG1"))
    assert it.labels == {"body_part": "skin", "diagnosis": "nv", "age": "41", "sex": "male", "site": "back"}
    assert it.subject_id == "HAM10000/L0"
    with pytest.raises(ValueError, match="no column"):
        registry.create(
            "dataset", "csv", {"root": str(root), "preset": "ham10000", "columns": {"diagnosis": "diagnosis"}}
        ).load()


def test_nifti_source_slices_with_organs(tmp_path, registry):
    import nibabel as nib

    vol = np.zeros((8, 8, 5), dtype=np.int16)
    seg = np.zeros((8, 8, 5), dtype=np.uint8)
    seg[1:6, 1:6, 1] = 1
    seg[2:7, 2:7, 2] = 2
    seg[0:2, 0:2, 3] = 2  # 4 voxels: under min_voxels
    for name, arr in (("ct.nii.gz", vol), ("seg.nii.gz", seg), ("mr.nii.gz", vol + 1), ("mrseg.nii.gz", seg)):
        nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / name)
    (tmp_path / "labels.json").write_text(
        json.dumps(
            {"seg.nii.gz": {"1": "liver", "2": "kidney_right"}, "mrseg.nii.gz": {"1": "spleen", "2": "liver"}}
        )
    )
    opts = {
        "root": str(tmp_path),
        "min_voxels": 10,
        "volumes": [
            {"image": "ct.nii.gz", "segmentation": "seg.nii.gz", "modality": "ct"},
            {"image": "mr.nii.gz", "segmentation": "mrseg.nii.gz", "modality": "mri"},
            {"image": "missing.nii.gz", "modality": "ct"},
        ],
    }
    seed = registry.create("dataset", "nifti", opts).load()
    assert sorted((it.modality.value, it.labels["organs"]) for it in seed.items) == [
        ("ct", "liver"),
        ("ct", "right kidney"),
        ("mri", "liver"),
        ("mri", "spleen"),
    ]
    assert [r.reason for r in seed.rejects] == ["missing_file"]
    assert len({it.image.sha256 for it in seed.items}) == 4 and len({it.subject_id for it in seed.items}) == 2
    assert open_image(seed.items[0].image, registry).size == (8, 8)


def test_medmnist_source_splits(tmp_path, registry):
    np.savez(
        tmp_path / "pneumoniamnist.npz",
        train_images=np.random.default_rng(0).integers(0, 255, (6, 28, 28), dtype=np.uint8),
        train_labels=np.array([[0], [1], [0], [1], [0], [1]], dtype=np.uint8),
        val_images=np.random.default_rng(1).integers(0, 255, (2, 28, 28), dtype=np.uint8),
        val_labels=np.array([[0], [1]], dtype=np.uint8),
    )
    opts = {"root": str(tmp_path), "file": "pneumoniamnist.npz"}
    seed = registry.create("dataset", "medmnist", opts).load()
    assert Counter(it.split for it in seed.items) == {"train": 6, "val": 2}
    assert {it.labels["diagnosis"] for it in seed.items} == {"normal", "pneumonia"}
    assert {it.modality for it in seed.items} == {Modality.XRAY}
    mapped = registry.create("dataset", "medmnist", {**opts, "split_map": {"val": "test"}}).load()
    assert Counter(it.split for it in mapped.items) == {"train": 6, "test": 2}
    resplit = registry.create("dataset", "medmnist", {**opts, "use_source_splits": False}).load()
    assert sum(Counter(it.split for it in resplit.items).values()) == 8


def test_unreadable_npz_is_a_clear_error(tmp_path, registry):
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read .* as a MedMNIST"):
        registry.create("dataset", "medmnist", {"root": str(tmp_path), "file": "x.npz"}).load()
    with pytest.raises(FileNotFoundError, match="not found"):
        registry.create("dataset", "medmnist", {"root": str(tmp_path), "file": "y.npz"}).load()
