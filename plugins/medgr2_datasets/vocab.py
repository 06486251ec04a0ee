"""Vocabulary of the offline question builder: readable class names, fallback label spaces, age bands.

Class names are looked up per dataset first, then in the shared table, then the raw label is
made readable (``kidney_cyst`` → ``kidney cyst``). ``LabelsOptions.class_names`` overrides all.
"""

from __future__ import annotations

import re

from medgr2.data import Modality

HAM10000_CLASSES = {
    "nv": "melanocytic nevus",
    "mel": "melanoma",
    "bkl": "benign keratosis-like lesion",
    "bcc": "basal cell carcinoma",
    "akiec": "actinic keratosis or intraepithelial carcinoma",
    "vasc": "vascular lesion",
    "df": "dermatofibroma",
}
NCT_CRC_CLASSES = {
    "ADI": "adipose tissue",
    "BACK": "background",
    "DEB": "debris",
    "LYM": "lymphocytes",
    "MUC": "mucus",
    "MUS": "smooth muscle",
    "NORM": "normal colon mucosa",
    "STR": "cancer-associated stroma",
    "TUM": "colorectal adenocarcinoma epithelium",
}
BUSI_CLASSES = {
    "benign": "benign breast lesion",
    "malignant": "malignant breast lesion",
    "normal": "normal breast tissue",
}
FIGURE1_CLASSES = {
    "COVID-19": "COVID-19 pneumonia",
    "Pneumonia": "non-COVID pneumonia",
    "No finding": "no abnormal finding",
}

DATASET_CLASS_NAMES: dict[str, dict[str, str]] = {
    "HAM10000": HAM10000_CLASSES,
    "BUSI": BUSI_CLASSES,
    "NCT-CRC-HE": NCT_CRC_CLASSES,
    "Figure1-COVID": FIGURE1_CLASSES,
    "PneumoniaMNIST": {"normal": "normal", "pneumonia": "pneumonia"},
}
"""Built-in readable names of the shared datasets' classes, by dataset name."""

SHARED_CLASS_NAMES: dict[str, str] = {**HAM10000_CLASSES, **NCT_CRC_CLASSES, **FIGURE1_CLASSES}
"""Unambiguous raw codes recognised in any dataset."""

MODALITY_VOCAB: tuple[str, ...] = tuple(m.label for m in Modality if m is not Modality.OTHER)
"""Distractors of modality-recognition questions."""

BODY_PART_VOCAB = (
    "chest",
    "abdomen",
    "head",
    "breast",
    "skin",
    "eye",
    "colon",
    "pelvis",
    "extremity",
    "cervical spine",
    "knee",
    "heart",
)
SITE_VOCAB = (
    "back",
    "lower extremity",
    "trunk",
    "upper extremity",
    "abdomen",
    "face",
    "chest",
    "foot",
    "neck",
    "scalp",
    "hand",
    "ear",
)
SEX_VOCAB = ("male", "female")
AGE_BANDS = ("under 20 years", "20-39 years", "40-59 years", "60-79 years", "80 years or older")

FALLBACK_SPACES: dict[str, tuple[str, ...]] = {
    "modality": MODALITY_VOCAB,
    "body_part": BODY_PART_VOCAB,
    "site": SITE_VOCAB,
    "sex": SEX_VOCAB,
    "age": AGE_BANDS,
}
"""Label spaces used when a dataset's own space is too small to give distractors."""


def readable(raw: str, dataset: str = "", overrides: dict[str, str] | None = None) -> str:
    """Human-readable name of a raw class label (``nv`` → ``melanocytic nevus``)."""
    if overrides and raw in overrides:
        return overrides[raw]
    table = DATASET_CLASS_NAMES.get(dataset, {})
    if raw in table:
        return table[raw]
    if raw in SHARED_CLASS_NAMES:
        return SHARED_CLASS_NAMES[raw]
    return raw.replace("_", " ").strip()


def parse_age(raw: str) -> float | None:
    """An age in years from strings like ``"45.0"``, ``"50+"``, ``"early 40s"`` (None if absent)."""
    m = re.search(r"\d+(?:\.\d+)?", raw or "")
    if not m:
        return None
    age = float(m.group())
    return age if 0 <= age < 130 else None


def age_band(raw: str) -> str | None:
    """The :data:`AGE_BANDS` entry an age string falls in (None when no age is given)."""
    age = parse_age(raw)
    if age is None:
        return None
    return AGE_BANDS[min(int(age // 20), len(AGE_BANDS) - 1)]


def normalise_sex(raw: str) -> str | None:
    """``M``/``male`` → ``male``, ``F``/``female`` → ``female``, anything else → None."""
    s = (raw or "").strip().lower()
    if s in ("m", "male", "man"):
        return "male"
    if s in ("f", "female", "woman"):
        return "female"
    return None
