"""Rebuild the embedded demo corpus (``corpus.npz`` + ``corpus.json``) from the shared real data.

Not needed at run time: the quickstart reads the two files this writes. Run it from the
repository root with the shared data folder present::

    python plugins/medgr2_datasets/demo_corpus/build_corpus.py [--shared ../shared/data]

What it takes (licences in ``LICENSE`` and ``ATTRIBUTION.md`` beside this file):

- **PneumoniaMNIST** (CC BY 4.0): class-balanced, seeded subsets of the 28×28 chest X-rays,
  pixels unchanged: ``train`` from the file's train split, ``val`` and ``test`` from its val
  split (disjoint images; MedMNIST gives no patient ids, so each image is its own subject).
- **TotalSegmentator** (Apache-2.0): every axial slice of the small CT and MR example volumes that
  shows an organ, windowed to 8-bit grey (CT 40/400 HU, MR percentile stretch) with the organs of
  its segmentation as labels. Two volumes cannot be split by volume without leaving one modality
  out of training, so both are training data (subject = the volume).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20


def _balanced(labels: np.ndarray, per_class: int, rng: np.random.Generator, exclude: set[int]) -> list[int]:
    out: list[int] = []
    for cls in (0, 1):
        pool = [i for i in np.flatnonzero(labels == cls).tolist() if i not in exclude]
        out += sorted(rng.choice(pool, size=per_class, replace=False).tolist())
    return out


def build(shared: Path, out: Path = HERE, train_per_class: int = 120, val_per_class: int = 30,
          test_per_class: int = 40) -> dict:
    rng = np.random.default_rng(SEED)
    z = np.load(shared / "xray-pneumoniamnist" / "pneumoniamnist.npz")
    tr_lab, va_lab = z["train_labels"].ravel(), z["val_labels"].ravel()
    train_idx = _balanced(tr_lab, train_per_class, rng, set())
    val_idx = _balanced(va_lab, val_per_class, rng, set())
    test_idx = _balanced(va_lab, test_per_class, rng, set(val_idx))
    names = {0: "normal", 1: "pneumonia"}
    arrays: dict[str, np.ndarray] = {}
    items: list[dict] = []
    pn_images, frame = [], 0
    for split, source, idx, lab in (("train", z["train_images"], train_idx, tr_lab),
                                    ("val", z["val_images"], val_idx, va_lab),
                                    ("test", z["val_images"], test_idx, va_lab)):
        src = "train" if split == "train" else "val"
        for i in idx:
            pn_images.append(source[i])
            items.append({"array": "pneumoniamnist", "frame": frame, "dataset": "PneumoniaMNIST",
                          "modality": "xray", "labels": {"diagnosis": names[int(lab[i])], "body_part": "chest"},
                          "subject": f"{src}/{i}", "split": split, "record": f"pneumoniamnist {src}_images[{i}]"})
            frame += 1
    arrays["pneumoniamnist"] = np.stack(pn_images).astype(np.uint8)

    from medgr2.images import open_image
    from medgr2.plugins import ensure_registry
    from medgr2_datasets.presets import SharedOptions, SharedSource

    registry = ensure_registry(None)
    seed = SharedSource(SharedOptions(preset="totalsegmentator", root=shared)).load()
    by_volume: dict[str, list] = {}
    for it in seed.items:
        by_volume.setdefault(it.image.path, []).append(it)
    for path, its in sorted(by_volume.items()):
        key = "totalsegmentator_" + ("ct" if "ct" in path else "mr")
        frames = []
        for it in sorted(its, key=lambda x: x.image.frame or 0):
            grey = np.asarray(open_image(it.image, registry).convert("L"), dtype=np.uint8)
            items.append({"array": key, "frame": len(frames), "dataset": "TotalSegmentator",
                          "modality": it.modality.value,
                          "labels": {k: v for k, v in it.labels.items() if k in ("organs", "body_part")},
                          "subject": Path(path).name.split(".")[0], "split": "train",
                          "record": f"{path} slice {it.image.frame}"})
            frames.append(grey)
        arrays[key] = np.stack(frames)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "corpus.npz", **arrays)
    manifest = {"version": 1, "seed": SEED, "items": items}
    lines = ",\n".join(json.dumps(it, separators=(",", ":")) for it in items)
    head = json.dumps({k: v for k, v in manifest.items() if k != "items"})[:-1]
    (out / "corpus.json").write_text(f'{head}, "items": [\n{lines}\n]}}\n', encoding="utf-8")
    return {k: v.shape for k, v in arrays.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"))
    print(build(ap.parse_args().shared))
