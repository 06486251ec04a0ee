"""Small on-disk fixtures for tests: an OmniMedVQA-layout folder with the official quirks.

:func:`write_omnimedvqa_fixture` writes ``QA_information/{Open,Restricted}-access/<Dataset>.json``
and real PNG images under ``Images/<Dataset>/...``, including

- ``modality_type`` strings spelled as in the official release (``"CT(Computed Tomography)"``,
  ``"MR (Mag-netic Resonance Imaging)"``, ``"OCT (Optical Coherence Tomography"``,
  ``"Microscopy Images"``);
- one file whose records use the key ``modality`` instead of ``modality_type``;
- one file under ``Restricted-access/``;
- 2-, 3- and 4-option questions of all five question types, ``gt_answer`` as option text.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

FIXTURE_DATASETS: tuple[tuple[str, str, str, str, str], ...] = (
    # (dataset, access folder, modality key, raw modality string, modality option text)
    ("Chest CT Scan", "Open-access", "modality_type", "CT(Computed Tomography)", "CT"),
    ("Brain Tumor MRI", "Open-access", "modality_type", "MR (Mag-netic Resonance Imaging)", "MRI"),
    ("OCT Retina", "Open-access", "modality_type", "OCT (Optical Coherence Tomography", "OCT"),
    ("Blood Cell", "Open-access", "modality", "Microscopy Images", "Microscopy"),
    ("BUSI", "Open-access", "modality_type", "Ultrasound", "Ultrasound"),
    ("ISIC2020", "Restricted-access", "modality_type", "Dermoscopy", "Dermoscopy"),
)
"""The datasets the fixture writes, with the quirks each carries."""

_QUESTIONS = (
    (
        "Modality Recognition",
        "What imaging modality is used for this image?",
        ["CT", "MRI", "X-ray", "Ultrasound", "Dermoscopy", "OCT", "Microscopy", "Fundus photography"],
    ),
    (
        "Anatomy Identification",
        "Which organ is shown in this image?",
        ["Lung", "Liver", "Brain", "Kidney", "Retina", "Breast", "Skin"],
    ),
    (
        "Disease Diagnosis",
        "What abnormality is present in this image?",
        ["Normal", "Adenocarcinoma", "Glioma", "Drusen", "Benign tumor", "Melanoma"],
    ),
    ("Lesion Grading", "What is the grade of the lesion?", ["Grade 1", "Grade 2", "Grade 3", "Grade 4"]),
    ("Other Biological Attributes", "What is the sex of the patient?", ["Male", "Female"]),
)


def _png(path: Path, rng: random.Random, size: int = 32) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    px = img.load()
    for _ in range(size * 4):
        px[rng.randrange(size), rng.randrange(size)] = tuple(rng.randrange(256) for _ in range(3))
    img.save(path, format="PNG")


def write_omnimedvqa_fixture(root: Path, n_per_dataset: int = 5, seed: int = 0,
                             questions_per_image: int = 1) -> Path:
    """Write an OmniMedVQA-layout folder under ``root`` and return its path (``root/OmniMedVQA``).

    Each of :data:`FIXTURE_DATASETS` gets ``n_per_dataset`` records (question types cycle through
    all five). Every ``questions_per_image`` consecutive records of a dataset share one image (as in
    the official release, where one image carries several questions); by default each record has
    its own image. Total records: ``6 * n_per_dataset``; images: ``6 * ceil(n_per_dataset /
    questions_per_image)``.
    """
    if questions_per_image < 1:
        raise ValueError("questions_per_image must be at least 1")
    rng = random.Random(seed)
    base = Path(root) / "OmniMedVQA"
    qid = 0
    for dataset, access, modality_key, raw_modality, modality_text in FIXTURE_DATASETS:
        records = []
        for i in range(n_per_dataset):
            qtype, question, pool = _QUESTIONS[i % len(_QUESTIONS)]
            n_options = min(len(pool), 2 + i % 3)
            options = rng.sample(pool, n_options)
            answer = rng.choice(options)
            if i % len(_QUESTIONS) == 0:  # modality recognition: the dataset's true modality
                options = [modality_text, *rng.sample([p for p in pool if p != modality_text], n_options - 1)]
                answer = modality_text
                rng.shuffle(options)
            k = i // questions_per_image
            rel = f"Images/{dataset}/case {k:03d}/img_{k:03d}.png"
            if i % questions_per_image == 0:
                _png(base / rel, rng)
            record = {
                "dataset": dataset,
                "question_id": f"{dataset.replace(' ', '_')}_{qid:05d}",
                "question_type": qtype,
                "question": question,
                "gt_answer": answer,
                "image_path": rel,
                modality_key: raw_modality,
            }
            record.update({f"option_{'ABCD'[k]}": o for k, o in enumerate(options)})
            records.append(record)
            qid += 1
        out = base / "QA_information" / access / f"{dataset}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(records, indent=1, ensure_ascii=False), encoding="utf-8")
    (base / "Images").mkdir(parents=True, exist_ok=True)
    return base
