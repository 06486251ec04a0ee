"""Every dataset of the shared data folder loads with the exact counts its README gives."""

from __future__ import annotations

from collections import Counter

import pytest

from medgr2.data import Modality
from medgr2_datasets.presets import SHARED_PRESETS, preset_spec

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def loaded(shared_data):
    """Each shared preset loaded once (HAM10000 indexing takes a few seconds)."""
    from medgr2.plugins import load_registry

    registry = load_registry()
    out = {}
    for name in SHARED_PRESETS:
        spec = preset_spec(name, shared_data)
        out[name] = registry.create("dataset", spec["name"], spec["options"]).load()
    return out


def _no_subject_overlap(items):
    splits_of = {}
    for it in items:
        splits_of.setdefault(it.subject_id, set()).add(it.split)
    return all(len(v) == 1 for v in splits_of.values())


def test_ham10000(loaded):
    seed = loaded["ham10000"]
    assert len(seed.items) == 8494 and not seed.rejects
    assert len({it.subject_id for it in seed.items}) == 6324  # lesion_id groups
    assert Counter(it.labels["diagnosis"] for it in seed.items) == {
        "nv": 5682,
        "bkl": 955,
        "mel": 929,
        "bcc": 437,
        "akiec": 274,
        "vasc": 122,
        "df": 95,
    }
    assert {it.modality for it in seed.items} == {Modality.DERMOSCOPY}
    assert _no_subject_overlap(seed.items)
    assert set(Counter(it.split for it in seed.items)) == {"train", "val", "test"}
    first = seed.items[0]
    assert {"diagnosis", "age", "sex", "site"} <= set(first.labels) and len(first.image.sha256) == 64


def test_busi(loaded):
    seed = loaded["busi"]
    assert len(seed.items) == 623 and not seed.rejects
    assert Counter(it.labels["diagnosis"] for it in seed.items) == {
        "benign": 356,
        "malignant": 158,
        "normal": 109,
    }
    assert {it.image.width for it in seed.items} == {256}


def test_pneumoniamnist(loaded):
    seed = loaded["pneumoniamnist"]
    assert Counter(it.split for it in seed.items) == {"train": 3882, "val": 524}
    assert set(Counter(it.labels["diagnosis"] for it in seed.items)) == {"normal", "pneumonia"}
    assert all(it.image.loader == "npz" and it.image.frame is not None for it in seed.items)


def test_nct_crc(loaded):
    seed = loaded["nct-crc"]
    assert len(seed.items) == 9
    assert sorted(it.labels["diagnosis"] for it in seed.items) == [
        "ADI",
        "BACK",
        "DEB",
        "LYM",
        "MUC",
        "MUS",
        "NORM",
        "STR",
        "TUM",
    ]


def test_totalsegmentator(loaded):
    seed = loaded["totalsegmentator"]
    assert len({it.subject_id for it in seed.items}) == 2
    assert Counter(it.modality for it in seed.items) == {Modality.CT: 30, Modality.MRI: 20}
    assert all(it.labels.get("organs") for it in seed.items)
    assert any("liver" in it.labels["organs"].split(", ") for it in seed.items)
    assert _no_subject_overlap(seed.items)
    assert len({it.image.sha256 for it in seed.items}) == len(seed.items)


def test_figure1(loaded):
    seed = loaded["figure1"]
    assert len(seed.items) == 55 and not seed.rejects
    assert Counter(it.labels.get("diagnosis") for it in seed.items) == {
        "COVID-19": 35,
        None: 15,
        "No finding": 3,
        "Pneumonia": 2,
    }
    a, b = (next(it for it in seed.items if it.id.endswith(s)) for s in ("COVID-00003a", "COVID-00003b"))
    assert a.subject_id == b.subject_id and a.split == b.split
    assert _no_subject_overlap(seed.items)


def test_shared_source_and_pixels(loaded, shared_data, registry):
    """The ``shared`` source and a decode of one image per dataset (only here are pixels read)."""
    from medgr2.images import open_image

    seed = registry.create("dataset", "shared", {"preset": "nct-crc", "root": str(shared_data)}).load()
    assert len(seed.items) == 9
    for name, s in loaded.items():
        img = open_image(s.items[0].image, registry)
        assert img.mode == "RGB" and img.size[0] > 0, name
