"""Pieces every dataset source shares: hashing, grouped splits, modality parsing, rejects.

Splits are deterministic and grouped: every subject (patient, lesion, volume ...) is ranked by
a hash of ``(seed, subject)`` and the ranked list is cut by the split fractions, so all of a
subject's images land in one split and the result does not depend on file order.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medgr2.data import Modality, QuestionType, Reject, SeedItem, stable_hash
from medgr2.images import UnsafePathError, resolve_inside

STAGE = "data"
"""``Reject.stage`` of everything refused while loading data."""

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str], *, resolved: bool = False) -> str:
    """Hex sha256 of a file's bytes, cached per process by (real path, size, mtime).

    ``resolved=True`` says ``path`` is already a real path (from ``resolve_inside``)."""
    real = os.fspath(path) if resolved else os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    cached = _HASH_CACHE.get(key)
    if cached is None:
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        cached = _HASH_CACHE[key] = h.hexdigest()
    return cached


def frame_sha256(file_digest: str, frame: int | None) -> str:
    """Content hash of one frame of a multi-image file: the file's sha256 plus the frame index."""
    if frame is None:
        return file_digest
    return hashlib.sha256(f"{file_digest}#frame={frame}".encode()).hexdigest()


def bytes_sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def safe_path(root: str | os.PathLike[str], relative: str, record: str) -> Path:
    """:func:`medgr2.images.resolve_inside`, also applied to the path's percent-decoded and
    NFKC-normalised forms, so ``%2e%2e/``, ``..%5c`` or full-width ``．．／`` are refused too."""
    variant = relative
    for _ in range(3):
        variant = urllib.parse.unquote(variant)
    variant = unicodedata.normalize("NFKC", variant)
    if variant != relative:
        resolve_inside(root, variant, record=record)
    return resolve_inside(root, relative, record=record)


def reject(record: str, reason: str, detail: Any = "") -> Reject:
    """A :class:`Reject` of the data stage."""
    return Reject(stage=STAGE, id=record, reason=reason, detail=str(detail)[:500])


def reject_from_exception(record: str, exc: BaseException) -> Reject:
    """A reject whose reason names the kind of failure (unsafe path, missing, undecodable, too
    large, unreadable)."""
    if isinstance(exc, UnsafePathError):
        return reject(record, "unsafe_path", exc)
    if isinstance(exc, FileNotFoundError):
        return reject(record, "missing_file", exc)
    from medgr2_datasets.loaders import ImageTooLargeError
    from medgr2_datasets.probe import UndecodableImageError

    if isinstance(exc, UndecodableImageError):
        return reject(record, "undecodable", exc)
    if isinstance(exc, ImageTooLargeError):
        return reject(record, "too_large", exc)
    return reject(record, "unreadable", f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------------ splits

DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def split_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """How many subjects each split gets. Val and test get at least one subject each when
    their fraction is positive and there are enough subjects (3+, or 2 for test alone)."""
    total = sum(fractions.values()) or 1.0
    f = {k: fractions.get(k, 0.0) / total for k in ("train", "val", "test")}
    test = round(n * f["test"])
    val = round(n * f["val"])
    if f["test"] > 0 and n >= 2:
        test = max(test, 1)
    if f["val"] > 0 and n >= 3:
        val = max(val, 1)
    if f["train"] > 0 and n >= 1:
        while test + val >= n and (test + val) > 0:
            if val >= test and val > 0:
                val -= 1
            else:
                test -= 1
    return {"train": n - val - test, "val": val, "test": test}


def grouped_splits(
    subjects: Iterable[str], seed: int, fractions: dict[str, float] | None = None
) -> dict[str, str]:
    """Map each distinct subject to ``train``/``val``/``test``, deterministically by ``seed``."""
    unique = sorted(set(subjects))
    ranked = sorted(unique, key=lambda s: (stable_hash(seed, s, length=32), s))
    counts = split_counts(len(ranked), fractions or DEFAULT_FRACTIONS)
    out: dict[str, str] = {}
    i = 0
    for split in ("test", "val", "train"):
        for s in ranked[i : i + counts[split]]:
            out[s] = split
        i += counts[split]
    return out


def assign_splits(
    items: Sequence[SeedItem],
    seed: int,
    fractions: dict[str, float] | None = None,
    extra_labels: dict[str, str] | None = None,
) -> list[SeedItem]:
    """Give every item without a split one, grouped by ``subject_id`` (else the item id), and
    add ``extra_labels`` (an item's own labels win)."""
    todo = [it.subject_id or it.id for it in items if it.split is None]
    table = grouped_splits(todo, seed, fractions)
    out = []
    for it in items:
        update: dict[str, Any] = {}
        if it.split is None:
            update["split"] = table[it.subject_id or it.id]
        if extra_labels:
            update["labels"] = {**extra_labels, **it.labels}
        out.append(it.model_copy(update=update) if update else it)
    return out


# ------------------------------------------------------------------------- vocabulary parsing

_MODALITY_PATTERNS: list[tuple[str, Modality]] = [
    (r"\boct\b|optical\s*coherence", Modality.OCT),
    (r"\bct\b|computed\s*tomograph|\bcta\b", Modality.CT),
    (r"\bmri?\b|mag-?\s*netic|\bt1\b|\bt2\b|\bflair\b", Modality.MRI),
    (r"x-?\s*ray|radiograph|\bcxr\b|\bcr\b|\bdx\b|mammograph", Modality.XRAY),
    (r"ultrasound|sonograph|\bus\b|echocardiograph", Modality.ULTRASOUND),
    (r"dermoscop|dermatoscop|\bder\b", Modality.DERMOSCOPY),
    (r"fundus|retina|\bfp\b", Modality.FUNDUS),
    (r"microscop|patholog|histolog|\bh&e\b|cytolog|\bmicro\b", Modality.MICROSCOPY),
]


def parse_modality(raw: str | None) -> Modality:
    """Map a free-form modality string (OmniMedVQA's typo'd ones included) to :class:`Modality`.

    >>> parse_modality("MR (Mag-netic Resonance Imaging)").value
    'mri'
    >>> parse_modality("OCT (Optical Coherence Tomography").value
    'oct'
    """
    text = (raw or "").strip().lower()
    if not text:
        return Modality.OTHER
    for member in Modality:
        if text == member.value or text == member.label.lower():
            return member
    text = text.replace("_", " ")
    for pattern, modality in _MODALITY_PATTERNS:
        if re.search(pattern, text):
            return modality
    return Modality.OTHER


def parse_question_type(raw: str | None) -> QuestionType | None:
    """Map an OmniMedVQA/Med-R1 question-type string (or abbreviation) to :class:`QuestionType`."""
    text = re.sub(r"[^a-z]", "", (raw or "").lower())
    if not text:
        return None
    abbreviations = {
        "ai": QuestionType.ANATOMY_IDENTIFICATION,
        "dd": QuestionType.DISEASE_DIAGNOSIS,
        "lg": QuestionType.LESION_GRADING,
        "mr": QuestionType.MODALITY_RECOGNITION,
        "oba": QuestionType.OTHER_BIOLOGICAL_ATTRIBUTES,
    }
    if text in abbreviations:
        return abbreviations[text]
    for qt in QuestionType:
        if re.sub(r"[^a-z]", "", qt.value) in text:
            return qt
    if "biolog" in text or "attribute" in text:
        return QuestionType.OTHER_BIOLOGICAL_ATTRIBUTES
    if "anatom" in text:
        return QuestionType.ANATOMY_IDENTIFICATION
    if "diagnos" in text or "disease" in text:
        return QuestionType.DISEASE_DIAGNOSIS
    if "grad" in text:
        return QuestionType.LESION_GRADING
    if "modalit" in text:
        return QuestionType.MODALITY_RECOGNITION
    return None


def item_id(dataset: str, local: str) -> str:
    """The id of a seed item: ``<dataset>:<local id>``."""
    return f"{dataset}:{local}"


def clean_labels(labels: dict[str, Any]) -> dict[str, str]:
    """Drop empty/unknown label values and stringify the rest."""
    out = {}
    for k, v in labels.items():
        if v is None:
            continue
        s = str(v).strip()
        if s and s.lower() not in {"nan", "unknown", "none", "null"}:
            out[k] = s
    return out


# ------------------------------------------------------------------ seed items from VQA benchmarks

_YES_NO = {"yes", "no", "true", "false", "present", "absent"}
_SEX_QUESTION = re.compile(r"\b(sex|gender)\b", re.IGNORECASE)
_AGE_QUESTION = re.compile(r"\bage\b|how old", re.IGNORECASE)
_LABEL_OF_TYPE = {
    QuestionType.DISEASE_DIAGNOSIS: "diagnosis",
    QuestionType.LESION_GRADING: "grade",
    QuestionType.ANATOMY_IDENTIFICATION: "organs",
}


def _finding(sample: Any) -> str:
    """One finding a question reveals: ``<question type>: <answer>`` (the question itself when the answer
    alone says nothing, as ``yes``/``no`` does)."""
    answer = sample.answer.strip()
    if answer.casefold() in _YES_NO:
        return f"{sample.question.strip()} {answer}"
    return f"{sample.question_type.label.lower()}: {answer}"


def _unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for v in values:
        seen.setdefault(v.strip().casefold(), v.strip())
    return list(seen.values())


def benchmark_labels(samples: Sequence[Any], benchmark: str) -> dict[str, str]:
    """The labels the questions of one image reveal.

    ``modality``, ``benchmark``, ``question_types`` (the distinct types asked), ``findings`` (every
    correct answer, ``; ``-separated, with its question type) and, where the answers are unambiguous,
    the well-known keys the ``labels`` generator reads: ``diagnosis`` and ``grade`` (one distinct answer
    of that type), ``organs`` (the anatomy answers), ``sex`` and ``age`` (biological-attribute questions
    that ask for them). ``restricted: true`` when any question came from a restricted-access file.
    """
    labels: dict[str, str] = {"modality": samples[0].modality.label, "benchmark": benchmark}
    labels["question_types"] = ", ".join(sorted({s.question_type.label.lower() for s in samples}))
    labels["findings"] = "; ".join(_unique(_finding(s) for s in samples))
    for qtype, key in _LABEL_OF_TYPE.items():
        answers = _unique(s.answer for s in samples if s.question_type is qtype
                          and s.answer.strip().casefold() not in _YES_NO)
        if qtype is QuestionType.ANATOMY_IDENTIFICATION:
            if answers and not any("," in a for a in answers):
                labels[key] = ", ".join(answers)
        elif len(answers) == 1:
            labels[key] = answers[0]
    for s in samples:
        if s.question_type is QuestionType.OTHER_BIOLOGICAL_ATTRIBUTES:
            if _SEX_QUESTION.search(s.question):
                labels.setdefault("sex", s.answer.strip())
            elif _AGE_QUESTION.search(s.question):
                labels.setdefault("age", s.answer.strip())
    if any("restricted" in s.tags for s in samples):
        labels["restricted"] = "true"
    return clean_labels(labels)


def benchmark_seed_items(
    samples: Sequence[Any],
    benchmark: str,
    *,
    extra_labels: dict[str, str] | None = None,
    image_labels: dict[str, dict[str, str]] | None = None,
) -> list[SeedItem]:
    """One seed item per distinct image of a VQA benchmark's **train** split, for the generators.

    An image also used by a question of any other split (val, test, or none) never becomes an item,
    so nothing of the evaluation set reaches a generator. The item's labels are
    :func:`benchmark_labels` of the image's train questions, ``image_labels[image key]`` (e.g. dataset
    columns, which win over what the questions reveal) and ``extra_labels`` (which lose to both). Multi-image questions are not
    used (their answers belong to no single image). Items come in the order of the samples.

    Args:
        samples: The source's samples, splits assigned.
        benchmark: Recorded under ``labels["benchmark"]`` (``OmniMedVQA``, ``Med-R1`` ...).
        extra_labels: Labels added to every item.
        image_labels: Labels per image key (``ImageRef.key``).
    """
    held_out = {ref.key for s in samples if s.split != "train" for ref in s.images}
    by_image: dict[str, list[Any]] = {}
    for s in samples:
        if s.split == "train" and len(s.images) == 1 and s.images[0].key not in held_out:
            by_image.setdefault(s.images[0].key, []).append(s)
    items = []
    for key, group in by_image.items():
        first = group[0]
        dataset = first.provenance.source_dataset or benchmark
        labels = {**(extra_labels or {}), **benchmark_labels(group, benchmark), **(image_labels or {}).get(key, {})}
        items.append(SeedItem(id=item_id(dataset, key[:16]), dataset=dataset, image=first.images[0],
                              modality=first.modality, labels=clean_labels(labels),
                              subject_id=first.subject_id, split="train"))
    return items
