"""The stages of Algorithm 1, declared once.

:data:`STAGES` lists every stage in the order the loop walks it: its scope (once per run, or once
per cycle), what it does, the files it writes (:mod:`medgr2.artifacts`) and the ``medgr2`` command
that runs it alone. The loop (:class:`medgr2.loop.Loop`) walks this list; the CLI commands and the
library call the same stage functions, which live beside this module:

- :mod:`medgr2.stages.seed` — ``load_seed`` (seed), ``summarize``, ``export_omnimedvqa``;
- :mod:`medgr2.stages.generate` — ``select_items`` and ``generate`` (generate);
- :mod:`medgr2.stages.reward` — ``init_reward_model`` (reward-init), ``score_samples`` (score),
  ``update_reward_model`` (reward-update);
- :mod:`medgr2.stages.filter` — ``apply_filters`` (filter);
- :mod:`medgr2.stages.train` — ``ensure_policy`` (policy-init), ``train_policy`` (sft, grpo);
- :mod:`medgr2.stages.evaluate` — ``evaluate`` (evaluate-baseline, evaluate-sft, evaluate).

Each takes built components or the config and a registry, and a
:class:`~medgr2.interfaces.StageContext` whose ``work_dir`` receives the stage's artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medgr2 import artifacts as a

if TYPE_CHECKING:
    from medgr2.config import RunConfig
    from medgr2.interfaces import StageContext


@dataclass(frozen=True)
class StageSpec:
    """One stage of the loop.

    Attributes:
        name: The stage's folder name under ``cycle-NNN/`` and its manifest key.
        scope: ``"run"``: once, in cycle 0, before the cycles; ``"cycle"``: once per cycle.
        summary: What it does (Algorithm 1's words).
        artifacts: The files it writes into its folder.
        command: The ``medgr2`` command that runs this stage alone (``None``: only inside ``medgr2 run``).
        did_work: What "done" means: a stage that did not do this fails with a message.
    """

    name: str
    scope: Literal["run", "cycle"]
    summary: str
    artifacts: tuple[str, ...]
    command: str | None
    did_work: str


STAGES: tuple[StageSpec, ...] = (
    StageSpec("seed", "run", "load the data sources: seed items (train/val/test) and ready-made samples",
              (a.ITEMS, a.SAMPLES, a.REJECTS), "data inspect", "every source loaded (unreadable records are rejects)"),
    StageSpec("eval-set", "run", "the held-out VQA set: evaluation.sources, else label-built from test items",
              (a.SAMPLES,), None, "the evaluation set is not empty when an evaluator is configured"),
    StageSpec("reward-init", "run", "build the graded set (reward.grade_set), train R_φ v0, write its calibration",
              (a.GRADES_TRAIN, a.GRADES_HELDOUT, a.RESULT), "train-rm", "R_φ v0 trained and saved"),
    StageSpec("policy-init", "run", "the starting policy: policy.model, or a tiny VLM built offline",
              (), "models tiny", "a model folder with config.json"),
    StageSpec("evaluate-baseline", "run", "the starting policy on the held-out set (zero-shot)",
              (a.PREDICTIONS, a.EVAL_REPORT), "eval run", "every held-out question answered and scored"),
    StageSpec("generate", "cycle", "G writes candidates from the train items",
              (a.SAMPLES, a.REJECTS, a.GENERATION_LEDGER), "generate",
              "every selected item has a sample or a final reject"),
    StageSpec("score", "cycle", "R_φ scores the candidates", (a.SCORED,), "score", "one score per candidate"),
    StageSpec("filter", "cycle", "threshold / top-K, dedup, overlap with D_gen, contamination → D_high",
              (a.KEPT, a.DECISIONS, a.FUNNEL), "filter", "one decision per candidate per step"),
    StageSpec("generator-update", "cycle", "high-reward kept samples update the generator for the next cycle "
              "(generation.update; skipped when unset)", (), None, "a new generator version recorded"),
    StageSpec("sft", "cycle", "SFT on D_gen ∪ D_high", (f"{a.POLICY_DIR}/{a.TRAIN_RESULT}",), "sft",
              "≥ 1 optimizer step"),
    StageSpec("evaluate-sft", "cycle", "the SFT policy on the held-out set, when GRPO follows (so the report "
              "shows SFT → SFT + GRPO)", (a.PREDICTIONS, a.EVAL_REPORT), "eval run",
              "every held-out question answered and scored (nothing to do without GRPO or an evaluator)"),
    StageSpec("grpo", "cycle", "GRPO with α·R_φ + β·match on D_high", (f"{a.POLICY_DIR}/{a.TRAIN_RESULT}",), "grpo",
              "≥ 1 optimizer step"),
    StageSpec("evaluate", "cycle", "the policy on the held-out set", (a.PREDICTIONS, a.EVAL_REPORT), "eval run",
              "every held-out question answered and scored"),
    StageSpec("reward-update", "cycle", "policy samples are labelled and R_φ is retrained (with replay), then "
              "promoted only if its held-out calibration holds", (a.LABELLED, a.RESULT, a.GATE), None,
              "R_φ retrained on enough examples and the gate decided (a kept R_φ is a recorded decision)"),
)
"""Every stage, in the order the loop runs them."""

BY_NAME: dict[str, StageSpec] = {s.name: s for s in STAGES}


def stages(scope: Literal["run", "cycle"]) -> tuple[StageSpec, ...]:
    """The stages of one scope, in order."""
    return tuple(s for s in STAGES if s.scope == scope)


def stage_context(config: RunConfig, work_dir: str | Path, *, cycle: int = 0, registry: Any = None,
                  reporter: Any = None, **fields: Any) -> StageContext:
    """The :class:`~medgr2.interfaces.StageContext` of one stage: the loop and every stage command build it
    here, so a command run as cycle ``t`` sees exactly what the loop's cycle ``t`` sees (seed ``seed + t``,
    the answer format, scorer and overlap policy of the config)."""
    from medgr2.interfaces import StageContext

    return StageContext(work_dir=Path(work_dir), cycle=cycle, seed=config.seed + cycle, reporter=reporter,
                        registry=registry, answer_format=config.policy.answer_format,
                        scorer=config.evaluation.scorer, allow_overlap=config.filters.allow_overlap,
                        report_to=tuple(config.report_to), **fields)


class StageFailed(RuntimeError):
    """A stage could not do its work (e.g. nothing to train on); the message says why and what to change."""

    def __init__(self, stage: str, message: str):
        self.stage = stage
        super().__init__(f"{stage}: {message}")


class StageIncomplete(RuntimeError):
    """A stage stopped before finishing (SIGINT / SIGTERM): its partial work is kept and ``--resume``
    finishes it. ``exit_code`` is what the CLI exits with (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, stage: str, message: str, exit_code: int = 130):
        self.stage, self.exit_code = stage, exit_code
        super().__init__(f"{stage}: {message}")
