"""The embedded demo corpus: real images shipped inside the package (``demo_corpus/``).

``demo_corpus/corpus.npz`` holds the pixel arrays and ``demo_corpus/corpus.json`` one record per
image (array, frame, dataset, modality, labels, subject, split); ``LICENSE`` and
``ATTRIBUTION.md`` beside them give the licences (CC BY 4.0, Apache-2.0) and sources, and
``build_corpus.py`` rebuilds both files from the shared data folder. Contents (see
``ATTRIBUTION.md``): 380 PneumoniaMNIST chest X-rays (28×28; class-balanced train 240, val 60,
test 80, each image its own subject) and 50 TotalSegmentator CT and MR slices with the organs
of their segmentation (training data, grouped by volume).

The ``demo`` source reads it (option ``corpus``, on by default) beside the package-bundled
images; images load through the ``npz`` loader, so nothing is unpacked to disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medgr2.data import ImageRef, Modality, Reject, SeedItem
from medgr2_datasets.source_support import bytes_sha256, item_id, reject

CORPUS_DIR = Path(__file__).resolve().parent / "demo_corpus"
"""Where the embedded corpus lives (package data)."""

CORPUS_FILE = "corpus.npz"
MANIFEST_FILE = "corpus.json"


def corpus_items(folder: Path = CORPUS_DIR) -> tuple[list[SeedItem], list[Reject]]:
    """The corpus as seed items with their recorded splits (a missing or damaged file is a reject)."""
    manifest_path, npz_path = folder / MANIFEST_FILE, folder / CORPUS_FILE
    if not manifest_path.is_file() or not npz_path.is_file():
        return [], [reject(str(folder), "missing_file",
                           f"the embedded demo corpus is not installed ({MANIFEST_FILE} and {CORPUS_FILE} under "
                           f"{folder}); reinstall medgr2, or rebuild it with demo_corpus/build_corpus.py")]
    records = json.loads(manifest_path.read_text(encoding="utf-8"))["items"]
    items: list[SeedItem] = []
    rejects: list[Reject] = []
    with np.load(npz_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for rec in records:
        where = f"{CORPUS_FILE}#{rec['array']}[{rec['frame']}]"
        arr = arrays.get(rec["array"])
        if arr is None or not 0 <= rec["frame"] < len(arr) or arr.dtype != np.uint8:
            rejects.append(reject(where, "undecodable", f"{where} is missing or not 8-bit pixels ({rec['record']})"))
            continue
        pixels = np.ascontiguousarray(arr[rec["frame"]])
        modality = Modality(rec["modality"])
        ref = ImageRef(path=f"{CORPUS_FILE}#{rec['array']}", root=str(folder), loader="npz", frame=rec["frame"],
                       sha256=bytes_sha256(pixels.tobytes()), modality=modality,
                       width=int(pixels.shape[1]), height=int(pixels.shape[0]))
        items.append(SeedItem(id=item_id(rec["dataset"], rec["record"]), dataset=rec["dataset"], image=ref,
                              modality=modality, labels=dict(rec["labels"]),
                              subject_id=f"{rec['dataset']}/{rec['subject']}", split=rec["split"]))
    return items, rejects
