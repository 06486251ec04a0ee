"""The objects that flow between stages.

Every object here is a frozen pydantic model with ``extra="forbid"`` and a lossless JSON
round-trip (``Model.model_validate_json(obj.model_dump_json()) == obj``). Stages never mutate
an object: they make a new one with ``obj.model_copy(update=...)`` (or :func:`evolve`, which
re-validates).

Pixels never live in these objects: an :class:`ImageRef` names an image (path, hash, size)
and the image loaders registered by plugins read it lazily (see :mod:`medgr2.images`).
"""

from __future__ import annotations

import hashlib
import json
import string
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LETTERS = string.ascii_uppercase[:8]
"""Option letters, in order: option ``i`` is ``LETTERS[i]``."""

Split = Literal["train", "val", "test"]


class Modality(str, Enum):
    """The eight OmniMedVQA imaging modalities, plus ``other``."""

    CT = "ct"
    MRI = "mri"
    XRAY = "xray"
    ULTRASOUND = "ultrasound"
    DERMOSCOPY = "dermoscopy"
    FUNDUS = "fundus"
    OCT = "oct"
    MICROSCOPY = "microscopy"
    OTHER = "other"

    @property
    def label(self) -> str:
        """Human-readable name, as used in questions and options."""
        return _MODALITY_LABELS[self]


_MODALITY_LABELS = {
    Modality.CT: "CT",
    Modality.MRI: "MRI",
    Modality.XRAY: "X-ray",
    Modality.ULTRASOUND: "ultrasound",
    Modality.DERMOSCOPY: "dermoscopy",
    Modality.FUNDUS: "fundus photography",
    Modality.OCT: "OCT",
    Modality.MICROSCOPY: "microscopy",
    Modality.OTHER: "other",
}


class QuestionType(str, Enum):
    """The five OmniMedVQA question types."""

    MODALITY_RECOGNITION = "modality_recognition"
    ANATOMY_IDENTIFICATION = "anatomy_identification"
    DISEASE_DIAGNOSIS = "disease_diagnosis"
    LESION_GRADING = "lesion_grading"
    OTHER_BIOLOGICAL_ATTRIBUTES = "other_biological_attributes"

    @property
    def label(self) -> str:
        """Human-readable name ("Disease Diagnosis")."""
        return self.value.replace("_", " ").title()


class Frozen(BaseModel):
    """Base of every data object: immutable, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


M = TypeVar("M", bound=BaseModel)


def evolve(obj: M, **update: Any) -> M:
    """Return a validated copy of ``obj`` with ``update`` applied (unlike ``model_copy``,
    the result is re-validated, so derived fields such as content ids stay correct)."""
    data = obj.model_dump()
    data.update(update)
    if "id" in data and "id" not in update and hasattr(obj, "content_id"):
        data.pop("id")
    return type(obj).model_validate(data)


def stable_hash(*parts: Any, length: int = 16) -> str:
    """A short, stable sha256 hex digest of JSON-serialisable parts."""
    blob = _STABLE_JSON(parts)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


_STABLE_JSON = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False).encode
"""``json.dumps(..., sort_keys=True, default=str, ensure_ascii=False)``, without an encoder built per call."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ImageRef(Frozen):
    """A reference to one image; never the pixels.

    ``path`` is relative to ``root`` (a dataset root folder) or, when ``root`` is ``None``, a
    URI such as ``pkg://skimage/retina``. ``loader`` names the registered image loader that
    decodes it (``file`` for anything PIL reads; plugins add ``dicom``, ``nifti``, ``npz`` ...),
    and ``frame`` selects a slice or array index inside a multi-image file.
    """

    path: str = Field(min_length=1)
    root: str | None = None
    loader: str = "file"
    frame: int | None = Field(default=None, ge=0)
    sha256: str = Field(default="", description="Hex sha256 of the file's bytes (plus frame).")
    modality: Modality = Modality.OTHER
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)

    @property
    def key(self) -> str:
        """Identity of the image for dedup and overlap checks."""
        return self.sha256 or stable_hash(self.root, self.path, self.frame)


DEFECT_KEY = "defect"
"""The ``Provenance.raw`` key where a generator that spoils samples on purpose (the ``labels`` defect
model) records each sample's defect kind (``"none"`` for a clean one). R_φ and the filters never read
it; the report and ``medgr2_eval.defects`` use it to measure them."""
DEFECT_CLEAN = "none"
"""The :data:`DEFECT_KEY` value of a sample the generator did not spoil."""


class Provenance(Frozen):
    """Where a sample came from and how it was made."""

    source_dataset: str = ""
    source_id: str = ""
    generator: str = ""
    generator_version: str = ""
    model_id: str | None = None
    prompt_strategy: str | None = None
    template_hash: str | None = None
    cycle: int = Field(default=0, ge=0)
    seed: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    raw: dict[str, str] = Field(default_factory=dict, description="Raw source strings kept verbatim.")


class RewardBreakdown(Frozen):
    """A reward: the total plus its named terms and the reward model version that gave it."""

    total: float
    terms: dict[str, float] = Field(default_factory=dict)
    model_version: str | None = None


class VQASample(Frozen):
    """One multiple-choice VQA triplet (image, question, options/answer, rationale).

    ``id`` is a stable content id (hash of images, question, options and answer) when not given.
    """

    id: str = ""
    images: tuple[ImageRef, ...] = Field(min_length=1)
    question: str = Field(min_length=1)
    options: tuple[str, ...] = Field(min_length=2, max_length=8)
    answer: str
    rationale: str = ""
    modality: Modality = Modality.OTHER
    question_type: QuestionType = QuestionType.DISEASE_DIAGNOSIS
    provenance: Provenance = Field(default_factory=Provenance)
    reward: RewardBreakdown | None = None
    split: Split | None = None
    subject_id: str | None = Field(default=None, description="Patient/lesion/volume id for grouped splits.")
    tags: tuple[str, ...] = ()

    @field_validator("question")
    @classmethod
    def _question_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question is blank")
        return v

    @field_validator("options")
    @classmethod
    def _options_unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        norm = [o.strip().lower() for o in v]
        if any(not o for o in norm):
            raise ValueError("an option is blank")
        if len(set(norm)) != len(norm):
            raise ValueError(f"options are not unique: {list(v)}")
        return v

    @model_validator(mode="after")
    def _answer_and_id(self) -> VQASample:
        if self.answer not in self.options:
            raise ValueError(f"answer {self.answer!r} is not one of the options {list(self.options)}")
        if not self.id:
            object.__setattr__(self, "id", self.content_id)
        return self

    @property
    def content_id(self) -> str:
        return stable_hash(
            [i.key for i in self.images], self.question.strip(), list(self.options), self.answer
        )

    @property
    def answer_index(self) -> int:
        return self.options.index(self.answer)

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer_index]

    def options_text(self, sep: str = "\n") -> str:
        """Options formatted as ``A. text`` lines."""
        return sep.join(f"{LETTERS[i]}. {o}" for i, o in enumerate(self.options))


class SeedItem(Frozen):
    """A labelled image from a dataset source: what generators turn into questions.

    ``labels`` holds the dataset's annotations under well-known keys where they apply
    (``diagnosis``, ``grade``, ``organs`` (comma-separated), ``age``, ``sex``, ``site``, ``view``,
    ``body_part``) plus anything else the source has.
    """

    id: str
    dataset: str
    image: ImageRef
    modality: Modality
    labels: dict[str, str] = Field(default_factory=dict)
    subject_id: str | None = None
    split: Split | None = None
    text: str | None = Field(default=None, description="Free text tied to the image (a report, a note).")


class Reject(Frozen):
    """Something a stage refused, and why (a corrupt file, an invalid model reply ...)."""

    stage: str
    id: str
    reason: str
    detail: str = ""


class RewardInput(Frozen):
    """What a reward model scores: (image, question, answer[, rationale])."""

    image: ImageRef | None = None
    question: str = ""
    answer: str
    rationale: str = ""

    @classmethod
    def from_sample(cls, s: VQASample, answer: str | None = None) -> RewardInput:
        return cls(image=s.images[0], question=s.question + "\n" + s.options_text(),
                   answer=s.answer if answer is None else answer, rationale=s.rationale)


class GradedExample(RewardInput):
    """A reward-model training example: an input with its target score and grade.

    Grades follow the paper: 1 original → 10, 2 synonym-perturbed → 6, 3 phrase-deleted → 0,
    4 irrelevant or hallucinated → −6. Examples labelled by a judge or by answer match use
    ``grade=0`` and carry their own ``target``.
    """

    id: str = ""
    target: float = Field(ge=-6.0, le=10.0)
    grade: int = Field(ge=0, le=4)
    group_id: str = Field(default="", description="Report/study id: examples of one group share a split.")
    split: Split | None = None
    origin: str = Field(default="grade", description="grade | judge | match | policy ...")

    @model_validator(mode="after")
    def _id(self) -> GradedExample:
        if not self.id:
            object.__setattr__(self, "id", stable_hash(self.group_id, self.grade, self.question, self.answer))
        return self


class FilterDecision(Frozen):
    """One filter's verdict on one sample."""

    sample_id: str
    filter: str
    keep: bool
    reason: str
    score: float | None = None


class Prediction(Frozen):
    """One evaluation record (the predictions file is JSONL of these)."""

    question_id: str
    question: str
    options: tuple[str, ...] = ()
    gt_answer: str
    model_answer: str
    modality: str | None = None
    question_type: str | None = None
    dataset: str | None = None
    option_scores: tuple[float, ...] | None = None
    raw_answer: str | None = Field(default=None, description="The full model output when model_answer is the "
                                                             "answer read out of an answer format.")


class GroupMetrics(Frozen):
    """Metrics of one group of predictions (all, one modality, one question type ...)."""

    n: int
    correct: int
    invalid: int
    accuracy: float
    accuracy_valid_only: float | None
    ci95: tuple[float, float] | None = None
    macro_f1: float | None = None
    balanced_accuracy: float | None = None
    auroc: float | None = None


class EvalReport(Frozen):
    """An evaluation report: overall metrics plus per-group breakdowns, under a named scorer."""

    scorer: str
    overall: GroupMetrics
    by_modality: dict[str, GroupMetrics] = Field(default_factory=dict)
    by_question_type: dict[str, GroupMetrics] = Field(default_factory=dict)
    by_dataset: dict[str, GroupMetrics] = Field(default_factory=dict)
    model: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class Ledger(Frozen):
    """Counts and costs of one stage."""

    stage: str
    requests: int = 0
    successes: int = 0
    retries: int = 0
    failures: int = 0
    rejects: dict[str, int] = Field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    extra: dict[str, Any] = Field(default_factory=dict)


class TrainResult(Frozen):
    """What a trainer (policy or reward model) leaves behind."""

    checkpoint: str
    version: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    wall_s: float = 0.0
    warnings: tuple[str, ...] = ()
    """What degenerated or was adapted on the way (a batch shrunk to fit, a collapse guard that fired)."""


class GenerationResult(Frozen):
    """A generator's output: valid samples, rejects with reasons, and the ledger."""

    samples: tuple[VQASample, ...] = ()
    rejects: tuple[Reject, ...] = ()
    ledger: Ledger = Field(default_factory=lambda: Ledger(stage="generate"))


class CycleLedger(Frozen):
    """One cycle of the loop, in numbers: what each stage produced, cost and took, and what it decided.

    Written to ``cycle-NNN/ledger.json`` (and, as a list, to the run's ``ledger.json``).
    """

    cycle: int
    items: int = 0
    generated: int = 0
    valid: int = 0
    kept: int = 0
    requests: int = 0
    cost_usd: float = 0.0
    judge_requests: int = Field(default=0, description="Judge calls charged to this cycle (cycle 1 includes R_φ "
                                                        "v0's judge seeding at reward-init).")
    judge_cost_usd: float = 0.0
    generation: Ledger | None = None
    generator_version: str = Field(default="", description="The generator version that wrote this cycle's samples.")
    generator_next: str = Field(default="", description="The version generator-update made for the next cycle.")
    funnel: dict[str, Any] = Field(default_factory=dict)
    optimizer_steps: dict[str, int] = Field(default_factory=dict)
    train_s: dict[str, float] = Field(default_factory=dict)
    stage_s: dict[str, float | None] = Field(default_factory=dict)
    rm_version: str = ""
    rm_promoted: bool | None = None
    policy: str = ""
    evaluation: GroupMetrics | None = None
    sft_evaluation: GroupMetrics | None = Field(default=None, description="The SFT policy alone, when GRPO followed.")
    warnings: tuple[str, ...] = ()


DATA_OBJECTS: tuple[type[Frozen], ...] = (
    ImageRef, Provenance, RewardBreakdown, VQASample, SeedItem, Reject, RewardInput, GradedExample,
    FilterDecision, Prediction, GroupMetrics, EvalReport, Ledger, TrainResult, GenerationResult, CycleLedger,
)
"""Every data object; the round-trip tests iterate this."""
