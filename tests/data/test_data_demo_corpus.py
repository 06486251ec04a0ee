"""The embedded demo corpus (medgr2_datasets/demo_corpus): real images, licensed, split by subject."""

from __future__ import annotations

from collections import Counter

from medgr2.data import Modality
from medgr2.images import open_image


def test_corpus_ships_with_licence_attribution_and_stays_small():
    from medgr2_datasets.corpus import CORPUS_DIR

    names = {p.name for p in CORPUS_DIR.iterdir()}
    assert {"corpus.npz", "corpus.json", "LICENSE", "ATTRIBUTION.md", "build_corpus.py"} <= names
    licence = (CORPUS_DIR / "LICENSE").read_text()
    assert "CC BY 4.0" in licence and "Apache License" in licence and "END OF TERMS AND CONDITIONS" in licence
    assert "Kermany" in (CORPUS_DIR / "ATTRIBUTION.md").read_text()
    assert sum(p.stat().st_size for p in CORPUS_DIR.iterdir()) < 5_000_000


def test_demo_source_reads_the_corpus_with_grouped_splits(registry):
    seed = registry.create("dataset", "demo", {}).load()
    assert not seed.rejects
    corpus = [it for it in seed.items if it.dataset in ("PneumoniaMNIST", "TotalSegmentator")]
    assert len(corpus) == 430
    pneumonia = [it for it in corpus if it.dataset == "PneumoniaMNIST"]
    counts = Counter((it.split, it.labels["diagnosis"]) for it in pneumonia)
    assert counts == {("train", "normal"): 120, ("train", "pneumonia"): 120, ("val", "normal"): 30,
                      ("val", "pneumonia"): 30, ("test", "normal"): 40, ("test", "pneumonia"): 40}
    assert all(it.modality is Modality.XRAY for it in pneumonia)
    slices = [it for it in corpus if it.dataset == "TotalSegmentator"]
    assert {it.modality for it in slices} == {Modality.CT, Modality.MRI}
    assert all(it.labels["organs"] and it.split == "train" for it in slices)
    # no subject (image, volume) and no pixel content on two sides of a split
    by_subject: dict[str, set] = {}
    by_pixels: dict[str, set] = {}
    for it in seed.items:
        by_subject.setdefault(it.subject_id, set()).add(it.split)
        by_pixels.setdefault(it.image.sha256, set()).add(it.split)
    assert all(len(s) == 1 for s in by_subject.values())
    assert all(len(s) == 1 for s in by_pixels.values())
    for it in (pneumonia[0], slices[0], slices[-1]):
        img = open_image(it.image, registry)
        assert img.mode == "RGB" and img.size == (it.image.width, it.image.height)


def test_corpus_can_be_left_out(registry):
    seed = registry.create("dataset", "demo", {"corpus": False}).load()
    assert seed.items and not {it.dataset for it in seed.items} & {"PneumoniaMNIST", "TotalSegmentator"}
