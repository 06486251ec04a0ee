"""Test helpers for medgr2 and its plugins: fake components, fixtures and sample builders.

This module is a pytest plugin (registered through the ``pytest11`` entry point), so any project
that installs medgr2 gets these fixtures without a ``conftest.py``:

``medgr2_registry``
    A fresh :class:`~medgr2.registry.Registry` holding only the fake components below (every
    kind, each named ``fake``); no installed plugin is loaded, so a test sees exactly what it adds.
``medgr2_make_registry``
    A factory: ``medgr2_make_registry(my_plugin_module)`` builds a fresh registry with the fakes
    plus the given plugin objects/modules, as a plugin package tests its own registrations.
``medgr2_context``
    A :class:`~medgr2.interfaces.StageContext` whose ``work_dir`` is inside ``tmp_path``.

The fakes satisfy the Protocols of :mod:`medgr2.interfaces` and are deterministic, cheap and
offline: :class:`FakeDatasetSource`, :class:`FakeGenerator`, :class:`FakeRewardModel`,
:class:`FakeFilter`, :class:`FakeTrainer`, :class:`FakeEvaluator`, :class:`FakeGradeSet`,
:class:`FakeLabeller`, :class:`FakeCalibrator`, plus the tiny policy :func:`fake_tiny_policy`, the reward term
:func:`fake_reward_term`, the scorer :func:`fake_scorer` and the image loader
:func:`fake_image_loader`, all registered by this module's hooks (so
``medgr2 --plugin medgr2.testing ...`` runs the CLI on fakes). Builders: :func:`make_image_ref`,
:func:`make_seed_item`, :func:`make_sample`, :func:`make_png_samples`, :func:`make_context`.

Importing this module is cheap (pytest loads it in every session): it imports pydantic and
pluggy, nothing heavy; data objects are imported when first used.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from medgr2 import artifacts
from medgr2.hookspecs import hookimpl

if TYPE_CHECKING:
    from medgr2.data import (
        EvalReport,
        FilterDecision,
        GenerationResult,
        GradedExample,
        ImageRef,
        RewardInput,
        SeedItem,
        TrainResult,
        VQASample,
    )
    from medgr2.interfaces import SeedSet, StageContext
    from medgr2.registry import Registry

__all__ = [
    "FAKE_NAME",
    "FakeDatasetOptions",
    "FakeDatasetSource",
    "FakeEvaluator",
    "FakeEvaluatorOptions",
    "FakeFilter",
    "FakeFilterOptions",
    "FakeGenerator",
    "FakeGeneratorOptions",
    "FakeRewardModel",
    "FakeRewardOptions",
    "FakeTrainer",
    "FakeTrainerOptions",
    "fake_config_data",
    "fake_image_loader",
    "fake_reward_term",
    "fake_scorer",
    "make_context",
    "make_image_ref",
    "make_registry",
    "make_sample",
    "make_seed_item",
]

FAKE_NAME = "fake"
"""The name every fake component is registered under, in every kind."""

DIAGNOSES = ("normal", "pneumonia", "tumour", "fracture", "effusion", "nodule")
"""The labels the fake dataset draws from (also the fake generator's distractor pool)."""


def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") / 2**64


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------ builders


def make_image_ref(path: str = "img/0.png", **fields: Any) -> ImageRef:
    """An :class:`~medgr2.data.ImageRef` for tests (loader ``fake`` unless given; no file needed)."""
    from medgr2.data import ImageRef

    fields.setdefault("loader", FAKE_NAME)
    fields.setdefault("sha256", hashlib.sha256(path.encode()).hexdigest())
    return ImageRef(path=path, **fields)


def make_seed_item(index: int = 0, diagnosis: str | None = None, **fields: Any) -> SeedItem:
    """A labelled :class:`~medgr2.data.SeedItem` (``labels={"diagnosis": ...}``)."""
    from medgr2.data import Modality, SeedItem

    diagnosis = diagnosis or DIAGNOSES[index % len(DIAGNOSES)]
    modality = fields.pop("modality", Modality.XRAY)
    fields.setdefault("image", make_image_ref(f"img/{index}.png", modality=modality, width=32, height=32))
    fields.setdefault("dataset", "fake")
    fields.setdefault("labels", {"diagnosis": diagnosis})
    return SeedItem(id=fields.pop("id", f"fake-{index}"), modality=modality, **fields)


def make_sample(
    question: str = "What does this chest X-ray show?",
    options: Sequence[str] = ("normal", "pneumonia", "tumour", "fracture"),
    answer: str | None = None,
    *,
    image: str | ImageRef = "img/0.png",
    reward: float | None = None,
    **fields: Any,
) -> VQASample:
    """A valid :class:`~medgr2.data.VQASample` with sensible defaults; override any field.

    Args:
        question: The question text.
        options: 2–8 unique options.
        answer: One of ``options`` (default: the first).
        image: A path (made into an ``ImageRef`` with loader ``fake``) or an ``ImageRef``.
        reward: When given, ``reward=RewardBreakdown(total=reward)``.
        **fields: Any other ``VQASample`` field (``modality``, ``question_type``, ``provenance`` ...).
    """
    from medgr2.data import Modality, RewardBreakdown, VQASample

    options = tuple(options)
    ref = make_image_ref(image, modality=fields.get("modality", Modality.XRAY)) if isinstance(image, str) else image
    fields.setdefault("modality", Modality.XRAY)
    if reward is not None:
        fields["reward"] = RewardBreakdown(total=reward, model_version="fake-rm")
    return VQASample(images=(ref,), question=question, options=options,
                     answer=options[0] if answer is None else answer, **fields)


def fake_config_data() -> dict[str, Any]:
    """The default run config as plain data with every component (and every named one) set to the fakes."""
    from medgr2.config import RunConfig, iter_component_specs

    from medgr2.config import NAMED_COMPONENTS

    data = RunConfig().model_dump(mode="json")
    for _, _, spec in iter_component_specs(RunConfig, data):
        spec["name"], spec["options"] = FAKE_NAME, {}
    for loc in NAMED_COMPONENTS:
        section, _, key = loc.partition(".")
        data[section][key] = FAKE_NAME
    return data


def make_png_samples(root: str | Path, n: int = 8, **fields: Any) -> list[VQASample]:
    """``n`` two-class chest X-ray samples with real PNG files under ``root`` whose answer is the image colour
    (red: pneumonia, blue: normal), so a tiny policy can learn it; ``fields`` go into every sample (``split`` ...).
    Needs pillow."""
    from PIL import Image

    from medgr2.data import ImageRef, Modality, VQASample

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        sick = i % 2 == 0
        name = f"img{i}.png"
        Image.new("RGB", (64, 64), (200, 40, 40) if sick else (40, 40, 200)).save(root / name)
        options = ("pneumonia", "normal") if i % 4 < 2 else ("normal", "pneumonia")
        out.append(VQASample(
            images=(ImageRef(path=name, root=str(root), loader="file", modality=Modality.XRAY),),
            question=f"Case {i}: what does this chest X-ray show?", options=options,
            answer="pneumonia" if sick else "normal", rationale="The lungs look " + ("opaque." if sick else "clear."),
            modality=Modality.XRAY, **fields))
    return out


def make_context(work_dir: str | Path, registry: Registry | None = None, **fields: Any) -> StageContext:
    """A :class:`~medgr2.interfaces.StageContext` in ``work_dir`` with a silent reporter."""
    from medgr2.interfaces import StageContext

    return StageContext(work_dir=Path(work_dir), registry=registry, **fields)


# ------------------------------------------------------------------------------------------- fakes


class FakeDatasetOptions(_Options):
    """Options of :class:`FakeDatasetSource`."""

    n: int = Field(default=6, ge=0, description="Number of seed items (and ready-made samples).")
    name: str = Field(default="fake", description="The dataset name written into items.")


class FakeDatasetSource:
    """A :class:`~medgr2.interfaces.DatasetSource` of ``n`` labelled items and ``n`` samples.

    Splits are assigned deterministically: every third item is ``test``, the rest ``train``.
    """

    def __init__(self, options: FakeDatasetOptions | None = None):
        self.options = options or FakeDatasetOptions()

    def load(self) -> SeedSet:
        """Build the items and samples (no files are read)."""
        from medgr2.interfaces import SeedSet

        items, samples = [], []
        for i in range(self.options.n):
            split = "test" if i % 3 == 2 else "train"
            item = make_seed_item(i, dataset=self.options.name, split=split)
            items.append(item)
            diag = item.labels["diagnosis"]
            others = [d for d in DIAGNOSES if d != diag][:3]
            samples.append(make_sample(f"Which finding is shown? (item {i})", (diag, *others), diag,
                                       image=item.image, split=split))
        return SeedSet(items=tuple(items), samples=tuple(samples))


class FakeGeneratorOptions(_Options):
    """Options of :class:`FakeGenerator`."""

    n_options: int = Field(default=4, ge=2, le=6, description="Options per question.")
    reject_every: int = Field(default=0, ge=0, description="Reject every k-th item (0: never), as a bad reply.")
    label: str = Field(default="diagnosis", description="The label key answered by the question.")


class FakeGenerator:
    """A :class:`~medgr2.interfaces.Generator` that turns each item's label into one question.

    Items without the label, and every ``reject_every``-th item, become rejects with a reason.
    """

    version = "fake-gen-1"

    def __init__(self, options: FakeGeneratorOptions | None = None):
        self.options = options or FakeGeneratorOptions()

    def generate(self, items: Sequence[SeedItem], context: StageContext) -> GenerationResult:
        """One sample per item whose label is present; deterministic options order."""
        from medgr2.data import GenerationResult, Ledger, Provenance, Reject, VQASample

        samples, rejects = [], []
        opts = self.options
        for i, item in enumerate(items, start=1):
            answer = item.labels.get(opts.label)
            if answer is None or (opts.reject_every and i % opts.reject_every == 0):
                reason = "missing_label" if answer is None else "invalid_reply"
                rejects.append(Reject(stage="generate", id=item.id, reason=reason))
                continue
            pool = [d for d in DIAGNOSES if d != answer.strip().lower()][: opts.n_options - 1]
            options = sorted([answer, *pool], key=lambda o: _unit(item.id, o))
            samples.append(VQASample(
                images=(item.image,), question=f"What is the {opts.label} in this image?", options=tuple(options),
                answer=answer, rationale=f"The image shows {answer}.", modality=item.modality,
                split=item.split, subject_id=item.subject_id,
                provenance=Provenance(source_dataset=item.dataset, source_id=item.id, generator=FAKE_NAME,
                                      generator_version=self.version, cycle=context.cycle, seed=context.seed),
            ))
        ledger = Ledger(stage="generate", requests=len(items), successes=len(samples), failures=len(rejects),
                        rejects={r.reason: sum(1 for x in rejects if x.reason == r.reason) for r in rejects})
        return GenerationResult(samples=tuple(samples), rejects=tuple(rejects), ledger=ledger)


class FakeRewardOptions(_Options):
    """Options of :class:`FakeRewardModel`."""

    correct_bonus: float = Field(default=8.0, ge=0, le=16,
                                 description="Added when the answer appears in the question's rationale/text.")
    salt: str = Field(default="", description="Changes the deterministic scores (a different 'model').")


class FakeRewardModel:
    """A deterministic :class:`~medgr2.interfaces.RewardModel` on the [−6, 10] scale.

    The score is ``−6 + 2·u + bonus`` clipped to [−6, 10], where ``u`` in [0, 1) is a hash of
    the input and ``bonus`` applies when the rationale mentions the answer (so consistent
    samples score high). It does not depend on batch size or order. ``train`` remembers how many
    examples it saw and changes ``version``.
    """

    def __init__(self, options: FakeRewardOptions | None = None):
        self.options = options or FakeRewardOptions()
        self.trained_on = 0
        self.version = f"fake-rm-{self.options.salt or 0}"

    def score(self, inputs: Sequence[RewardInput], context: StageContext | None = None) -> list[float]:
        """One deterministic score per input."""
        out = []
        for x in inputs:
            u = _unit(self.options.salt, x.question, x.answer, x.rationale)
            bonus = self.options.correct_bonus if x.answer and x.answer.lower() in x.rationale.lower() else 0.0
            out.append(min(10.0, max(-6.0, -6.0 + 2.0 * u + bonus)))
        return out

    def train(self, examples: Sequence[GradedExample], context: StageContext,
              eval_examples: Sequence[GradedExample] = ()) -> TrainResult:
        """Record the example count, save to ``context.work_dir/fake_rm`` and return the result."""
        from medgr2.data import TrainResult

        self.trained_on += len(examples)
        self.version = f"fake-rm-{self.options.salt or 0}-{self.trained_on}"
        path = Path(context.work_dir) / "fake_rm"
        self.save(path)
        return TrainResult(checkpoint=str(path), version=self.version, metrics={"n": float(len(examples))})

    def save(self, path: Path) -> None:
        """Write ``fake_rm.json`` into the folder ``path``."""
        from medgr2.store import write_json

        write_json(Path(path) / "fake_rm.json", {"version": self.version, "trained_on": self.trained_on,
                                                 "options": self.options.model_dump()})

    def load(self, path: Path) -> None:
        """Read what :meth:`save` wrote."""
        from medgr2.store import read_json

        data = read_json(Path(path) / "fake_rm.json")
        self.version, self.trained_on = data["version"], data["trained_on"]
        self.options = FakeRewardOptions.model_validate(data["options"])


class FakeFilterOptions(_Options):
    """Options of :class:`FakeFilter`."""

    tau: float = Field(default=0.0, ge=-6, le=10, description="Keep samples whose reward total is >= tau.")


class FakeFilter:
    """A :class:`~medgr2.interfaces.Filter`: a reward threshold; unscored samples are dropped."""

    def __init__(self, options: FakeFilterOptions | None = None):
        self.options = options or FakeFilterOptions()

    def apply(self, samples: Sequence[VQASample], kept: Sequence[VQASample],
              context: StageContext) -> list[FilterDecision]:
        """One decision per sample, in order."""
        from medgr2.data import FilterDecision

        out = []
        for s in samples:
            score = s.reward.total if s.reward is not None else None
            keep = score is not None and score >= self.options.tau
            reason = "unscored" if score is None else ("above_tau" if keep else "below_tau")
            out.append(FilterDecision(sample_id=s.id, filter=FAKE_NAME, keep=keep, reason=reason, score=score))
        return out


class FakeTrainerOptions(_Options):
    """Options of :class:`FakeTrainer`."""

    steps: int = Field(default=1, ge=1, description="Pretend training steps.")


class FakeTrainer:
    """A :class:`~medgr2.interfaces.PolicyTrainer` that writes ``policy.json`` (the samples' ids) and a ``config.json``."""

    def __init__(self, options: FakeTrainerOptions | None = None):
        self.options = options or FakeTrainerOptions()

    def train(self, samples: Sequence[VQASample], model_path: Path, output_dir: Path,
              context: StageContext) -> TrainResult:
        """Write ``output_dir/policy.json`` and return it as the checkpoint."""
        from medgr2.data import TrainResult
        from medgr2.store import write_json

        output_dir = Path(output_dir)
        write_json(output_dir / "policy.json", {"base": str(model_path), "steps": self.options.steps,
                                                "samples": [s.id for s in samples]})
        write_json(output_dir / "config.json", {"model_type": FAKE_NAME})  # a policy folder the next cycle starts from
        history = tuple({"step": i + 1, "loss": 1.0 / (i + 1)} for i in range(self.options.steps))
        return TrainResult(checkpoint=str(output_dir), version=f"fake-policy-{len(samples)}",
                           metrics={"loss": history[-1]["loss"], "samples": float(len(samples))}, history=history)


class FakeEvaluatorOptions(_Options):
    """Options of :class:`FakeEvaluator`."""

    accuracy: float = Field(default=0.5, ge=0, le=1, description="Share of samples answered correctly.")


class FakeEvaluator:
    """A :class:`~medgr2.interfaces.Evaluator` answering correctly on a deterministic share of samples.

    Writes ``predictions.jsonl`` under ``output_dir`` and returns an :class:`~medgr2.data.EvalReport`
    (scorer ``fake``) with per-modality breakdowns.
    """

    def __init__(self, options: FakeEvaluatorOptions | None = None):
        self.options = options or FakeEvaluatorOptions()

    def evaluate(self, samples: Sequence[VQASample], model_path: Path, output_dir: Path,
                 context: StageContext) -> EvalReport:
        """Predict, write the predictions, and summarise them."""
        from medgr2.data import EvalReport, Prediction
        from medgr2.store import write_jsonl

        preds = []
        for s in samples:
            right = _unit(s.id, str(model_path)) < self.options.accuracy
            wrong = next(o for o in s.options if o != s.answer)
            preds.append(Prediction(question_id=s.id, question=s.question, options=s.options, gt_answer=s.answer,
                                    model_answer=s.answer if right else wrong, modality=s.modality.value,
                                    question_type=s.question_type.value, dataset=s.provenance.source_dataset))
        write_jsonl(Path(output_dir) / artifacts.PREDICTIONS, preds)
        by_mod: dict[str, list[Prediction]] = {}
        for p in preds:
            by_mod.setdefault(str(p.modality), []).append(p)
        return EvalReport(scorer=FAKE_NAME, overall=_metrics(preds), model=str(model_path),
                          by_modality={k: _metrics(v) for k, v in sorted(by_mod.items())})


def _metrics(preds: Sequence[Any]) -> Any:
    from medgr2.data import GroupMetrics

    n = len(preds)
    correct = sum(fake_scorer(p.model_answer, p.gt_answer) for p in preds)
    acc = correct / n if n else 0.0
    return GroupMetrics(n=n, correct=correct, invalid=0, accuracy=acc, accuracy_valid_only=acc)


class FakeGradeSet:
    """A :class:`~medgr2.interfaces.GradeSetBuilder`: each fallback (or given) sample's own answer at 10 and a
    wrong option at −6; every fifth sample's pair is held out."""

    def __init__(self, options: Any = None):
        self.options = options

    def build(self, request: Any, context: StageContext) -> Any:
        from medgr2.data import GradedExample, RewardInput
        from medgr2.interfaces import GradeSet

        train, held_out = [], []
        for n, s in enumerate([*request.samples, *request.fallback_samples]):
            wrong = next((o for o in s.options if o != s.answer), "")
            pair = [GradedExample(**RewardInput.from_sample(s, a).model_dump(), target=t, grade=g, group_id=s.id,
                                  origin="grade") for a, t, g in ((s.answer, 10.0, 1), (wrong, -6.0, 4))]
            (held_out if n % 5 == 4 else train).extend(pair)
        return GradeSet(train=train, held_out=held_out)


class FakeLabeller:
    """A :class:`~medgr2.interfaces.PolicyLabeller`: every sample's own answer, labelled 10 (no policy run)."""

    def __init__(self, options: Any = None):
        self.options = options

    def label(self, samples: Sequence[VQASample], policy: Path | None, context: StageContext,
              tools: Any) -> list[GradedExample]:
        from medgr2.data import GradedExample, RewardInput

        return [GradedExample(**RewardInput.from_sample(s).model_dump(), target=10.0, grade=0, group_id=s.id,
                              origin="match") for s in samples]


class FakeCalibrator:
    """A :class:`~medgr2.interfaces.Calibrator`: ``calibration.json`` with MSE and pairwise ordering accuracy."""

    def __init__(self, options: Any = None):
        self.options = options

    def write(self, folder: Path, scores: Sequence[float], targets: Sequence[float], grades: Sequence[int],
              version: str) -> dict[str, Any]:
        from medgr2.store import write_json

        pairs = [(a, b) for a in range(len(targets)) for b in range(len(targets)) if targets[a] > targets[b]]
        ordered = sum(1.0 if scores[a] > scores[b] else 0.5 if scores[a] == scores[b] else 0.0 for a, b in pairs)
        metrics = {"spearman": _spearman(scores, targets),
                   "mse": sum((x - y) ** 2 for x, y in zip(scores, targets)) / max(1, len(scores)),
                   "pairwise_accuracy": ordered / len(pairs) if pairs else 0.0, "model_version": version}
        write_json(Path(folder) / artifacts.CALIBRATION, metrics)
        return metrics


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation by ``scipy.stats.spearmanr``, as the real calibrator computes it (0.0 where
    it is undefined: fewer than two values, or a constant side)."""
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return 0.0
    return float(spearmanr(a, b).statistic)


def fake_tiny_policy(out_dir: Path, *, seed: int = 0) -> Path:
    """A :class:`~medgr2.interfaces.TinyModelFactory` writing a ``config.json`` only (for fake trainers)."""
    from medgr2.store import write_json

    write_json(Path(out_dir) / "config.json", {"model_type": FAKE_NAME, "seed": seed})
    return Path(out_dir)


def fake_reward_term(completions: Sequence[Any], answer: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """1.0 when a completion contains its answer (case-insensitive), else 0.0.

    >>> fake_reward_term(["it is Pneumonia", "normal"], answer=["pneumonia", "tumour"])
    [1.0, 0.0]
    """
    answers = list(answer) if answer is not None else [""] * len(completions)
    out = []
    for c, a in zip(completions, answers):
        text = c if isinstance(c, str) else " ".join(str(m.get("content", "")) for m in c)
        out.append(1.0 if a and a.lower() in text.lower() else 0.0)
    return out


def fake_scorer(model_answer: str, gt_answer: str, options: Sequence[str] = ()) -> bool:
    """Exact match after lower-casing and stripping (a stand-in scoring protocol).

    >>> fake_scorer(" Normal", "normal")
    True
    """
    return model_answer.strip().lower() == gt_answer.strip().lower()


def fake_image_loader(ref: ImageRef) -> Any:
    """A deterministic grey 32×32 (or the ref's size) ``PIL.Image`` for any ``ImageRef`` (needs pillow)."""
    from PIL import Image

    shade = int(_unit(ref.path, ref.frame) * 255)
    return Image.new("RGB", (ref.width or 32, ref.height or 32), (shade, shade, shade))


# The fakes' registrations: module-level hooks, so ``--plugin medgr2.testing`` loads them too.


@hookimpl
def medgr2_register_datasets(registry: Any) -> None:
    """The fake dataset source."""
    registry.add(FAKE_NAME, FakeDatasetSource, config=FakeDatasetOptions)


@hookimpl
def medgr2_register_generators(registry: Any) -> None:
    """The fake generator."""
    registry.add(FAKE_NAME, FakeGenerator, config=FakeGeneratorOptions)


@hookimpl
def medgr2_register_reward_models(registry: Any) -> None:
    """The fake reward model."""
    registry.add(FAKE_NAME, FakeRewardModel, config=FakeRewardOptions)


@hookimpl
def medgr2_register_filters(registry: Any) -> None:
    """The fake threshold filter."""
    registry.add(FAKE_NAME, FakeFilter, config=FakeFilterOptions)


@hookimpl
def medgr2_register_trainers(registry: Any) -> None:
    """The fake policy trainer."""
    registry.add(FAKE_NAME, FakeTrainer, config=FakeTrainerOptions)


@hookimpl
def medgr2_register_evaluators(registry: Any) -> None:
    """The fake evaluator."""
    registry.add(FAKE_NAME, FakeEvaluator, config=FakeEvaluatorOptions)


@hookimpl
def medgr2_register_reward_terms(registry: Any) -> None:
    """The fake reward term."""
    registry.add(FAKE_NAME, fake_reward_term)


@hookimpl
def medgr2_register_scorers(registry: Any) -> None:
    """The fake scorer."""
    registry.add(FAKE_NAME, fake_scorer)


@hookimpl
def medgr2_register_image_loaders(registry: Any) -> None:
    """The fake image loader (used by :func:`make_image_ref`)."""
    registry.add(FAKE_NAME, fake_image_loader)


@hookimpl
def medgr2_register_grade_sets(registry: Any) -> None:
    """The fake graded-set builder."""
    registry.add(FAKE_NAME, FakeGradeSet)


@hookimpl
def medgr2_register_policy_labellers(registry: Any) -> None:
    """The fake labeller."""
    registry.add(FAKE_NAME, FakeLabeller)


@hookimpl
def medgr2_register_calibrators(registry: Any) -> None:
    """The fake calibrator."""
    registry.add(FAKE_NAME, FakeCalibrator)


@hookimpl
def medgr2_register_tiny_policies(registry: Any) -> None:
    """The fake tiny policy (a folder with config.json)."""
    registry.add(FAKE_NAME, fake_tiny_policy)


def make_registry(*plugins: Any, fakes: bool = True) -> Registry:
    """A fresh registry from a fresh plugin manager: the fakes (unless ``fakes=False``) plus ``plugins``.

    Each of ``plugins`` is a plugin module or object with ``@hookimpl`` functions, or a spec
    string as for ``--plugin`` (dotted module or ``.py`` path). Installed entry points are *not*
    loaded, so the test sees only what it asks for. Loading is strict: a plugin that fails to
    import or implements an unknown hook raises :class:`~medgr2.plugins.PluginLoadError`.
    """
    from medgr2.plugins import PluginInfo, build_registry, check_pending, load_plugins

    ps = load_plugins([p for p in plugins if isinstance(p, str)], autoload=False, strict=True, env=False)
    objects = [sys.modules[__name__]] if fakes else []
    for obj in [*objects, *(p for p in plugins if not isinstance(p, str))]:
        name = getattr(obj, "__name__", type(obj).__name__)
        if not ps.pm.has_plugin(name):
            ps.pm.register(obj, name=name)
            ps.infos[name] = PluginInfo(name, name, source="module")
    check_pending(ps)
    return build_registry(ps)


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def medgr2_make_registry() -> Callable[..., Registry]:
    """The :func:`make_registry` factory: ``medgr2_make_registry(my_plugin)`` → a fresh registry."""
    return make_registry


@pytest.fixture
def medgr2_registry() -> Registry:
    """A fresh registry holding only the fake components (every kind, named ``fake``)."""
    return make_registry()


@pytest.fixture
def medgr2_context(tmp_path: Path, medgr2_registry: Registry) -> StageContext:
    """A :class:`~medgr2.interfaces.StageContext` with ``work_dir=tmp_path/"work"`` and the fake registry."""
    work = tmp_path / "work"
    work.mkdir()
    return make_context(work, medgr2_registry, seed=0, cycle=1)
