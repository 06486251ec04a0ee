"""The interfaces every component implements.

These are structural ``typing.Protocol``s (no base classes to inherit): a plugin's class
satisfies one by having the right methods. Every method is *batch-first*: it takes a sequence
and returns a sequence, so an implementation can batch, parallelise or cache as it likes.

A component is built by the registry as ``target(options)``, where ``options`` is an instance
of the options model it registered (see :mod:`medgr2.registry`). Everything run-specific
(where to write, which cycle, the reporter) arrives per call in a :class:`StageContext`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from medgr2.data import (
    EvalReport,
    FilterDecision,
    GenerationResult,
    GradedExample,
    ImageRef,
    Ledger,
    Reject,
    RewardInput,
    SeedItem,
    TrainResult,
    VQASample,
)

if TYPE_CHECKING:
    from medgr2.progress import Reporter
    from medgr2.registry import Registry


class ComponentFailed(RuntimeError):
    """A component cannot do its work and retrying will not help until something changes (a wrong API
    key, an unknown model ...). The message names the fix; the stage is not marked complete and the CLI
    reports it on one line and exits 1. Plugins subclass it for their own such errors."""


class StopRequest(threading.Event):
    """Set on SIGINT/SIGTERM; ``signum`` says which (the CLI exits 128 + signum)."""

    def __init__(self) -> None:
        super().__init__()
        self.signum: int | None = None

    def request(self, signum: int | None = None) -> None:
        """Ask the stage to stop, recording the signal that asked."""
        self.signum = signum
        self.set()


@dataclass
class StageContext:
    """Run-specific facts handed to every component call.

    Attributes:
        work_dir: A folder the stage owns (caches, checkpoints, temporary files).
        cycle: The loop cycle, 1-based (0 outside the loop).
        seed: The run seed; components derive their own seeds from it.
        reporter: Where progress goes (silent for library use).
        registry: The loaded registry, for components that use other components.
        stop: Set on SIGINT/SIGTERM; long stages finish in-flight work and return early.
        reward_model: The current reward model, for stages that need it (GRPO, filters).
        answer_format: How the policy answers (``policy.answer_format``: letter, text or think),
            for trainers and evaluators; ``None`` outside a run (components use their own option).
        scorer: The evaluation protocol (``evaluation.scorer``) an evaluator scores under.
        eval_samples: The held-out evaluation samples, which the contamination filter protects.
        allow_overlap: ``filters.allow_overlap``: keep samples already in D_gen.
        report_to: The run's trackers (``report_to``), for trainers that log their own curves.
    """

    work_dir: Path
    cycle: int = 0
    seed: int = 0
    reporter: Reporter | None = None
    registry: Registry | None = None
    stop: threading.Event = field(default_factory=StopRequest)
    reward_model: RewardModel | None = None
    answer_format: str | None = None
    scorer: str | None = None
    eval_samples: Sequence[VQASample] = ()
    allow_overlap: bool = False
    report_to: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir)
        if self.reporter is None:
            from medgr2.progress import SilentReporter

            self.reporter = SilentReporter()


@dataclass(frozen=True)
class SeedSet:
    """What a dataset source loads: labelled images, ready-made VQA samples, and rejects."""

    items: Sequence[SeedItem] = ()
    samples: Sequence[VQASample] = ()
    rejects: Sequence[Reject] = ()


@runtime_checkable
class DatasetSource(Protocol):
    """Seed data: labelled images (for generators) and/or ready-made VQA samples.

    ``load`` assigns every item and sample a split (train/val/test), deterministically from the
    source's seed and grouped by subject (patient, lesion, volume) when the metadata has one.
    Unreadable records are not raised: they come back in ``SeedSet.rejects`` with a reason.
    """

    def load(self) -> SeedSet:
        """Index the source (lazily: no pixels are decoded) and return what it holds."""
        ...


@runtime_checkable
class Generator(Protocol):
    """Writes candidate VQA samples from seed items.

    Implementations validate every sample (options unique and 2–8, answer among them ...) and
    return invalid ones as rejects with a reason; they never raise for one bad reply. They must
    be resumable: calling ``generate`` again with the same items and ``context.work_dir`` only
    does the work that is missing. ``context.stop`` asks them to stop early, keeping what is done.
    """

    def generate(self, items: Sequence[SeedItem], context: StageContext) -> GenerationResult:
        """Generate samples for ``items``."""
        ...


@runtime_checkable
class GeneratorUpdater(Protocol):
    """Updates the generator from a cycle's high-reward samples (Algorithm 1, line 14: "evolve G").

    ``update`` returns ``{"version": str, "options": {...}, ...}``: the options are merged into the
    generator's options from the next cycle on (e.g. a new exemplar bank, or a distilled model folder);
    the version goes into the cycle ledger and the report. ``context.work_dir`` is a run-level folder
    kept across cycles, so an updater can build on its previous versions.
    """

    def update(self, kept: Sequence[VQASample], context: StageContext) -> dict[str, Any]:
        """The next generator version from ``kept`` (scored samples the filters kept this cycle)."""
        ...


@runtime_checkable
class RewardModel(Protocol):
    """R_φ: scores (image, question, answer[, rationale]) on the paper's scale [−6, 10].

    ``score`` must not depend on batch size or order (within 1e-5). ``version`` names the
    weights that give the scores and goes into every :class:`~medgr2.data.RewardBreakdown`.
    """

    version: str

    def score(self, inputs: Sequence[RewardInput], context: StageContext | None = None) -> list[float]:
        """Score a batch of inputs; returns one float in [−6, 10] per input."""
        ...

    def train(
        self,
        examples: Sequence[GradedExample],
        context: StageContext,
        eval_examples: Sequence[GradedExample] = (),
    ) -> TrainResult:
        """Fit (or continue fitting) on graded examples with MSE; save under ``context.work_dir``."""
        ...

    def save(self, path: Path) -> None:
        """Write the model (safetensors + JSON config: no pickle) to the folder ``path``."""
        ...

    def load(self, path: Path) -> None:
        """Load weights written by :meth:`save` into this instance."""
        ...


@runtime_checkable
class Filter(Protocol):
    """Decides which samples to keep; returns exactly one decision per input sample, in order.

    ``kept`` is the data already kept in earlier cycles (``D_gen``), for overlap checks.
    Samples carry their reward in ``sample.reward`` when scored.
    """

    def apply(
        self, samples: Sequence[VQASample], kept: Sequence[VQASample], context: StageContext
    ) -> list[FilterDecision]:
        """One :class:`~medgr2.data.FilterDecision` per sample, each with a reason."""
        ...


@runtime_checkable
class PolicyTrainer(Protocol):
    """Trains the policy (SFT, GRPO ...) from a model folder into ``output_dir``.

    Rewards for RL trainers come from ``context.reward_model`` and the reward terms named in
    the trainer's options; a trainer that needs R_φ says so with a true ``needs_reward_model``
    attribute (optional; absent means no). Training resumes from the last complete checkpoint in
    ``output_dir`` when one exists. The result's ``metrics["optimizer_steps"]`` counts the steps
    taken: a trainer that took none has not trained.
    """

    def train(
        self, samples: Sequence[VQASample], model_path: Path, output_dir: Path, context: StageContext
    ) -> TrainResult:
        """Train on ``samples`` starting from ``model_path``; the result names the saved model folder."""
        ...


@runtime_checkable
class Evaluator(Protocol):
    """Runs a policy over VQA samples, writes ``predictions.jsonl`` and returns the report."""

    def evaluate(
        self, samples: Sequence[VQASample], model_path: Path, output_dir: Path, context: StageContext
    ) -> EvalReport:
        """Predict every sample, score the predictions, write them under ``output_dir``."""
        ...


@dataclass(frozen=True)
class GradeRequest:
    """What the reward-init stage hands a :class:`GradeSetBuilder`.

    Attributes:
        items: Train-split seed items of ``reward.grade_sources`` (their labels may carry report text).
        samples: Train-split ready-made samples of ``reward.grade_sources``.
        fallback_samples: The run's train-split VQA samples, to use only when nothing else gives a
            reference text.
        seed: The run seed.
        judge: ``reward.judge`` when R_φ v0 is seeded from judge scores (the paper distils GPT-4o
            preferences): the builder scores ``judge_samples`` of the run's samples with it and adds
            those examples (``origin="judge"``) to the graded set.
        judge_samples: How many samples to judge (``reward.judge_seed_samples``; 0: none).
    """

    items: Sequence[SeedItem] = ()
    samples: Sequence[VQASample] = ()
    fallback_samples: Sequence[VQASample] = ()
    seed: int = 0
    judge: Judge | None = None
    judge_samples: int = 0


@dataclass(frozen=True)
class GradeSet:
    """R_φ's graded training data: the examples to train on and the held-out ones to calibrate on."""

    train: Sequence[GradedExample]
    held_out: Sequence[GradedExample]


@runtime_checkable
class GradeSetBuilder(Protocol):
    """Builds the graded examples R_φ v0 trains on (the paper's 4-grade set from real reports)."""

    def build(self, request: GradeRequest, context: StageContext) -> GradeSet:
        """The train and held-out graded examples (deterministic for one seed)."""
        ...


@runtime_checkable
class Judge(Protocol):
    """An LLM judge: answers a prompt (with images) with a JSON object that follows ``schema``.

    The API generators satisfy it; the reward plugin's judge scores samples on the paper's four
    criteria through it. Implementations apply the same restricted-data gate as generation.
    """

    last_ledger: Ledger | None
    """Requests, tokens and cost of the last ``complete_json`` call (for the run's ledger)."""

    def screen(self, samples: Sequence[VQASample]) -> list[str | None]:
        """Why each sample must not be sent to this judge (restricted data to an external API), else ``None``."""
        ...

    def complete_json(self, prompts: Sequence[tuple[str, Sequence[ImageRef]]], schema: dict[str, Any],
                      context: StageContext) -> list[dict[str, Any] | Reject]:
        """One JSON object satisfying ``schema`` per ``(prompt, images)``, or a Reject with the reason, in order."""
        ...


@dataclass(frozen=True)
class LabelTools:
    """What a :class:`PolicyLabeller` may use: the evaluator (to get the policy's answers) and the judge."""

    evaluator: Evaluator | None = None
    judge: Judge | None = None


@runtime_checkable
class PolicyLabeller(Protocol):
    """Labels a cycle's samples with the policy's behaviour: new R_φ training data (Algorithm 1, step 4)."""

    def label(self, samples: Sequence[VQASample], policy: Path | None, context: StageContext,
              tools: LabelTools) -> list[GradedExample]:
        """Graded examples for continual R_φ training (empty when there is nothing to label)."""
        ...


@runtime_checkable
class Calibrator(Protocol):
    """Writes a reward model's held-out calibration report next to its checkpoint."""

    def write(self, folder: Path, scores: Sequence[float], targets: Sequence[float], grades: Sequence[int],
              version: str) -> dict[str, Any]:
        """Write the report under ``folder``; return its metrics (``spearman``, ``mse``, ``pairwise_accuracy`` ...)."""
        ...


class TinyModelFactory(Protocol):
    """Writes a small VLM with random weights that loads offline: ``f(out_dir, *, seed) -> Path``."""

    def __call__(self, out_dir: Path, *, seed: int = 0) -> Path: ...


@dataclass(frozen=True)
class ReportSection:
    """A titled block of the run report: trusted HTML built by the section (escape what you read)."""

    title: str
    html: str
    order: int = 50
    warnings: Sequence[str] = ()


@runtime_checkable
class RunReportSection(Protocol):
    """Contributes one section to the run report from the run folder (files its own plugin wrote)."""

    def render(self, run_dir: Path) -> ReportSection | None:
        """The section, or ``None`` when the run has nothing for it."""
        ...


RewardTerm = Callable[..., list[float]]
"""A reward term: ``f(completions, **kwargs) -> list[float]``, like TRL's reward functions.

``completions`` are strings (or chat messages); ``kwargs`` carries the GRPO dataset's columns, one value
per completion: ``answer`` (the gold option text), ``options``, ``question`` (with its lettered options),
``image_ref`` (the sample's first :class:`~medgr2.data.ImageRef` as JSON), ``sample_id``, and ``images``
(the decoded images TRL feeds the policy).
"""

Scorer = Callable[..., Any]
"""An evaluation protocol: see the ``medgr2_register_scorers`` hook."""

ImageLoader = Callable[..., Any]
"""``f(ref: ImageRef) -> PIL.Image.Image``: decodes the images of one ``ImageRef.loader`` kind."""

PromptStrategy = Any
"""A generation prompt template object, or a path to a versioned template file (see the generation plugin)."""
