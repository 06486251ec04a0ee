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
    Reject,
    RewardInput,
    SeedItem,
    TrainResult,
    VQASample,
)

if TYPE_CHECKING:
    from medgr2.progress import Reporter
    from medgr2.registry import Registry


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
        extras: Anything else a stage passes down (e.g. ``seed_items`` for judges).
    """

    work_dir: Path
    cycle: int = 0
    seed: int = 0
    reporter: Reporter | None = None
    registry: Registry | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    reward_model: RewardModel | None = None
    extras: dict[str, Any] = field(default_factory=dict)

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
    the trainer's options. Training resumes from the last complete checkpoint in
    ``output_dir`` when one exists.
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


RewardTerm = Callable[..., list[float]]
"""A reward term: ``f(completions, **kwargs) -> list[float]``, like TRL's reward functions.

``completions`` are strings (or chat messages); ``kwargs`` carries the dataset columns
(``answer``, ``options``, ``image`` ...), one value per completion.
"""

Scorer = Callable[..., Any]
"""An evaluation protocol: see the ``medgr2_register_scorers`` hook."""

ImageLoader = Callable[..., Any]
"""``f(ref: ImageRef) -> PIL.Image.Image``: decodes the images of one ``ImageRef.loader`` kind."""

KINDS: dict[str, str] = {
    "dataset": "DatasetSource: seed data loaders",
    "generator": "Generator: writes VQA samples",
    "reward_model": "RewardModel: R_φ",
    "filter": "Filter: keeps or drops samples",
    "trainer": "PolicyTrainer: SFT, GRPO ...",
    "evaluator": "Evaluator: runs a policy over a benchmark",
    "reward_term": "RewardTerm: f(completions, **kwargs) -> list[float]",
    "scorer": "Scorer: a named answer-scoring protocol",
    "image_loader": "ImageLoader: decodes one kind of ImageRef",
    "prompt": "Prompt strategy: a generation template",
    "function": "A named helper a stage needs from a plugin (the grade-set builder, the tiny-policy builder ...)",
}
"""Every component kind, with what it is."""
