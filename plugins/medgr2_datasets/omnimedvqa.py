"""Ready-made VQA sets: OmniMedVQA's official layout and Med-R1's split files.

OmniMedVQA: ``QA_information/Open-access/<Dataset>.json`` (and ``Restricted-access/``), each a
JSON array of records ``{dataset, question_id, question_type, question, gt_answer, image_path,
modality_type, option_A..option_D}``; images under ``Images/<Dataset>/...``. Quirks handled:
typo'd ``modality_type`` strings (``"MR (Mag-netic Resonance Imaging)"``, ``"OCT (Optical
Coherence Tomography"`` ...), one file using the key ``modality``, ``gt_answer`` given as option
text. The raw strings are kept in ``provenance.raw``. Questions of one image share a split.

Both sources also yield one :class:`~medgr2.data.SeedItem` per distinct train-split image (option
``seed_items``), labelled with what its questions reveal, so the generators write new questions from
the benchmark's images (:func:`~medgr2_datasets.source_support.benchmark_seed_items`); images of val/test
questions never become items.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medgr2.data import LETTERS, ImageRef, Modality, Provenance, QuestionType, Reject, VQASample
from medgr2.images import UnsafePathError
from medgr2.interfaces import SeedSet
from medgr2.stages.seed import keep_every_question
from medgr2_datasets.source_support import (
    benchmark_seed_items,
    file_sha256,
    grouped_splits,
    parse_modality,
    parse_question_type,
    reject,
    reject_from_exception,
    safe_path,
)
from medgr2_datasets.loaders import ImageTooLargeError
from medgr2_datasets.options import MedR1Options, OmniMedVQAOptions
from medgr2_datasets.probe import checked_ref

OPTION_KEYS = tuple(f"option_{c}" for c in LETTERS)
ACCESS_FOLDERS = ("Open-access", "Restricted-access")


class _ImageIndex:
    """Resolves, hashes and checks image paths once per path (many questions share one image).

    With ``check`` (the default), each image must exist and decode fully with the loader its
    content calls for (DICOM by ``DICM`` at byte 128, else ``file``); an image that does not is
    raised again, naming the file, for every record that uses it. Without ``check``, files are
    not opened and the loader comes from the extension (``.dcm``: ``dicom``)."""

    def __init__(self, root: Path, check: bool):
        self.root, self.check = root, check
        self._cache: dict[tuple[str, Modality], ImageRef | BaseException] = {}

    def ref(self, rel: str, modality: Modality, record: str) -> ImageRef:
        key = (rel, modality)
        if key not in self._cache:
            try:
                self._cache[key] = self._index(rel, modality, record)
            except (OSError, ValueError) as exc:
                self._cache[key] = exc
        found = self._cache[key]
        if isinstance(found, BaseException):
            raise found
        return found

    def _index(self, rel: str, modality: Modality, record: str) -> ImageRef:
        path = safe_path(self.root, rel, record)
        clean = rel.replace("\\", "/")
        if not self.check:
            loader = "dicom" if clean.lower().endswith((".dcm", ".dicom")) else "file"
            return ImageRef(path=clean, root=str(self.root), loader=loader, modality=modality)
        if not path.is_file():
            raise FileNotFoundError(f"image {rel!r} of record {record} not found under {self.root}")
        return checked_ref(self.root, clean, path, file_sha256(path), modality)


def _match_answer(answer: str, options: list[str]) -> str | None:
    if answer in options:
        return answer
    norm = {o.strip().casefold(): o for o in options}
    return norm.get(answer.strip().casefold())


def _with_splits(samples: list[VQASample], seed: int, fractions: dict[str, float]) -> list[VQASample]:
    table = grouped_splits((s.subject_id or s.id for s in samples if s.split is None), seed, fractions)
    return [
        s if s.split is not None else s.model_copy(update={"split": table[s.subject_id or s.id]})
        for s in samples
    ]


class OmniMedVQASource:
    """Loads OmniMedVQA's official layout into :class:`~medgr2.data.VQASample` objects."""

    def __init__(self, options: OmniMedVQAOptions):
        self.options = options

    def files(self) -> list[tuple[str, Path]]:
        """``(access, json file)`` pairs to read, sorted."""
        qa = Path(self.options.root) / "QA_information"
        if not qa.is_dir():
            raise FileNotFoundError(
                f"no QA_information/ folder under {self.options.root}: point 'root' at the OmniMedVQA folder "
                "(the one holding QA_information/ and Images/)"
            )
        folders = ACCESS_FOLDERS if self.options.include_restricted else ACCESS_FOLDERS[:1]
        out = []
        for access in folders:
            for f in sorted((qa / access).glob("*.json")):
                if self.options.datasets is None or f.stem in self.options.datasets:
                    out.append((access, f))
        return out

    def load(self) -> SeedSet:
        """Read every QA file; bad records become rejects, the rest VQA samples with splits."""
        o = self.options
        images = _ImageIndex(Path(o.root), o.check_images)
        samples: list[VQASample] = []
        rejects: list[Reject] = []
        for access, path in self.files():
            try:
                records = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                rejects.append(reject(path.name, "unreadable_qa_file", exc))
                continue
            if not isinstance(records, list):
                rejects.append(reject(path.name, "bad_qa_file", "the top level must be a JSON array"))
                continue
            for i, rec in enumerate(records):
                rid = f"{path.stem}#{rec.get('question_id', i) if isinstance(rec, dict) else i}"
                if not self.wanted(rec):
                    continue
                try:
                    samples.append(self.record_to_sample(rec, access, path.stem, images, rid))
                except (ValueError, OSError, KeyError, TypeError) as exc:
                    rejects.append(_record_reject(rid, exc))
                if o.limit and len(samples) >= o.limit:
                    return self._finish(samples, rejects)
        return self._finish(samples, rejects)

    def _finish(self, samples: list[VQASample], rejects: list[Reject]) -> SeedSet:
        """Splits, and an id of its own for every question id (content duplicates are warned
        about, never dropped: a benchmark keeps its denominator)."""
        o = self.options
        samples, notes = keep_every_question(samples, source="omnimedvqa")
        samples = _with_splits(samples, o.seed, o.fractions)
        items = benchmark_seed_items(samples, "OmniMedVQA", extra_labels=o.extra_labels) if o.seed_items else []
        return SeedSet(items=items, samples=samples, rejects=[*rejects, *notes])

    def wanted(self, rec: Any) -> bool:
        """Whether a record passes the ``modalities``/``question_types`` filters (checked before
        its image is hashed; malformed records pass, to be rejected with a reason)."""
        o = self.options
        if not isinstance(rec, dict):
            return True
        if o.modalities is not None:
            if parse_modality(str(rec.get("modality_type", rec.get("modality", "")))) not in o.modalities:
                return False
        if o.question_types is not None:
            qtype = parse_question_type(str(rec.get("question_type", "")))
            if qtype is not None and qtype not in o.question_types:
                return False
        return True

    @staticmethod
    def record_to_sample(rec: Any, access: str, stem: str, images: _ImageIndex, rid: str) -> VQASample:
        """One OmniMedVQA record → a sample (raises ``ValueError`` naming what is wrong)."""
        if not isinstance(rec, dict):
            raise ValueError(f"record is a {type(rec).__name__}, not an object")
        options = [str(rec[k]).strip() for k in OPTION_KEYS if rec.get(k) not in (None, "")]
        if len(options) < 2:
            raise ValueError("fewer than two options")
        answer = _match_answer(str(rec.get("gt_answer", "")), options)
        if answer is None:
            raise ValueError(f"gt_answer {rec.get('gt_answer')!r} is not one of the options {options}")
        modality_key = "modality_type" if "modality_type" in rec else "modality"
        raw_modality = str(rec.get(modality_key, ""))
        raw_type = str(rec.get("question_type", ""))
        qtype = parse_question_type(raw_type)
        if qtype is None:
            raise ValueError(f"unknown question_type {raw_type!r}")
        modality = parse_modality(raw_modality)
        image_path = rec.get("image_path")
        if not isinstance(image_path, str):
            raise ValueError("record has no image_path")
        dataset = str(rec.get("dataset") or stem)
        raw = {
            "access": access,
            "file": stem,
            "modality_key": modality_key,
            "modality_type": raw_modality,
            "question_type": raw_type,
            "dataset": dataset,
            "gt_answer": str(rec.get("gt_answer", "")),
            "question_id": str(rec.get("question_id", "")),
        }
        return VQASample(
            images=(images.ref(image_path, modality, rid),),
            question=str(rec.get("question", "")),
            options=tuple(options),
            answer=answer,
            rationale=str(rec.get("rationale", "") or ""),
            modality=modality,
            question_type=qtype,
            provenance=Provenance(
                source_dataset=dataset,
                source_id=str(rec.get("question_id", rid)),
                generator="omnimedvqa",
                raw=raw,
            ),
            subject_id=f"{dataset}/{image_path}",
            split=rec["split"] if rec.get("split") in ("train", "val", "test") else None,
            tags=("restricted",) if access == "Restricted-access" else (),
        )


def _record_reject(rid: str, exc: BaseException) -> Reject:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return reject(rid, "invalid_sample", first.get("msg", str(exc)))
    if isinstance(exc, (OSError, UnsafePathError, ImageTooLargeError)):
        return reject_from_exception(rid, exc)
    return reject(rid, "invalid_record", exc)


# ------------------------------------------------------------------------------------ Med-R1

_OPTION_RE = re.compile(r"([A-H])\)\s*(.*?)(?=(?:,\s*|\s+)[A-H]\)|\s*$)", re.S)
_ANSWER_RE = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.S | re.I)

_QTYPE_HINTS: list[tuple[str, QuestionType]] = [
    (
        r"modality|imaging technique|type of (?:scan|image)|kind of (?:scan|image)",
        QuestionType.MODALITY_RECOGNITION,
    ),
    (r"grade|stage|severity|level of", QuestionType.LESION_GRADING),
    (r"\bage\b|gender|\bsex\b|how old", QuestionType.OTHER_BIOLOGICAL_ATTRIBUTES),
    (r"organ|anatom|which part|structure|body part|region", QuestionType.ANATOMY_IDENTIFICATION),
]


def guess_question_type(question: str) -> QuestionType:
    """A question type from the wording (Med-R1's modality splits do not record it)."""
    q = question.lower()
    for pattern, qt in _QTYPE_HINTS:
        if re.search(pattern, q):
            return qt
    return QuestionType.DISEASE_DIAGNOSIS


def parse_problem(problem: str) -> tuple[str, list[str]]:
    """Split Med-R1's ``"question ... A)x, B)y, C)z"`` into the question and its options."""
    m = re.search(r"(?:^|\s)A\)", problem)
    if m is None:
        raise ValueError("no 'A)' option found in the problem text")
    question = problem[: m.start()].strip()
    found = _OPTION_RE.findall(problem[m.start() :].strip())
    letters = [letter for letter, _ in found]
    if letters != list(LETTERS[: len(letters)]):
        raise ValueError(f"options are not lettered A, B, C ... in order: {letters}")
    return question, [text.strip().rstrip(",").strip() for _, text in found]


def parse_solution(solution: str, options: list[str]) -> str:
    """The answer option text from ``"<answer> C </answer>"`` (a letter or the option text)."""
    m = _ANSWER_RE.search(solution)
    value = (m.group(1) if m else solution).strip().strip(".").strip()
    if len(value) == 1 and value.upper() in LETTERS:
        index = LETTERS.index(value.upper())
        if index < len(options):
            return options[index]
    matched = _match_answer(value, options)
    if matched is None:
        raise ValueError(f"solution {solution!r} names no option")
    return matched


class MedR1Source:
    """Loads Med-R1's split files (``image``, ``problem``, ``solution``) as VQA samples."""

    def __init__(self, options: MedR1Options):
        self.options = options

    def load(self) -> SeedSet:
        """Read the chosen split files; the Med-R1 split (train/test) is kept as is."""
        o = self.options
        base = safe_path(o.root, o.splits_dir, "splits_dir") / o.by
        if not base.is_dir():
            raise FileNotFoundError(
                f"no Med-R1 split folder {base}: expected {o.splits_dir}/{o.by}/{{train,test}}/"
            )
        images = _ImageIndex(Path(o.root), o.check_images)
        samples: list[VQASample] = []
        rejects: list[Reject] = []
        for split in o.splits:
            for f in sorted((base / split).glob("*.json")):
                if o.names and not any(n.lower() in f.stem.lower() for n in o.names):
                    continue
                try:
                    records = json.loads(f.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    rejects.append(reject(f.name, "unreadable_split_file", exc))
                    continue
                for i, rec in enumerate(records if isinstance(records, list) else []):
                    rid = f"{o.by}/{split}/{f.stem}#{i}"
                    try:
                        samples.append(self._sample(rec, f.stem, split, images, rid))
                    except (ValueError, OSError, KeyError, TypeError) as exc:
                        rejects.append(_record_reject(rid, exc))
        samples, notes = keep_every_question(samples[: o.limit] if o.limit else samples, source="medr1")
        items = benchmark_seed_items(samples, "Med-R1", extra_labels=o.extra_labels) if o.seed_items else []
        return SeedSet(items=items, samples=samples, rejects=[*rejects, *notes])

    def _sample(self, rec: Any, stem: str, split: str, images: _ImageIndex, rid: str) -> VQASample:
        if not isinstance(rec, dict):
            raise ValueError(f"record is a {type(rec).__name__}, not an object")
        question, options = parse_problem(str(rec.get("problem", "")))
        answer = parse_solution(str(rec.get("solution", "")), options)
        name = re.sub(r"[_-]?(train|test)$", "", stem, flags=re.I)
        if self.options.by == "modality":
            modality, qtype = parse_modality(name), guess_question_type(question)
        else:
            qtype = parse_question_type(name) or guess_question_type(question)
            modality = parse_modality(str(rec.get("modality", "")))
        image = rec.get("image")
        if not isinstance(image, str):
            raise ValueError("record has no image path")
        return VQASample(
            images=(images.ref(image, modality, rid),),
            question=question or "Answer the question.",
            options=tuple(options),
            answer=answer,
            modality=modality,
            question_type=qtype,
            provenance=Provenance(
                source_dataset=self.options.name or "Med-R1",
                source_id=rid,
                generator="medr1",
                raw={
                    "split_file": stem + ".json",
                    "problem": str(rec.get("problem", "")),
                    "solution": str(rec.get("solution", "")),
                },
            ),
            subject_id=image,
            split="train" if split == "train" else "test",
        )
