"""The reward stages: reward-init (graded set → R_φ v0), score, reward-update (continual R_φ, gated).

They work through the component Protocols only: the graded set comes from the configured
:class:`~medgr2.interfaces.GradeSetBuilder` (``reward.grade_set``), policy samples are labelled by a
:class:`~medgr2.interfaces.PolicyLabeller` (``reward.labelling``) and calibration is written by a
:class:`~medgr2.interfaces.Calibrator` (``reward.calibrator``). ``medgr2 train-rm`` and the loop's
reward-init call :func:`init_reward_model`, so both build the same set and the same model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medgr2 import artifacts
from medgr2.data import GradedExample, RewardBreakdown, RewardInput, TrainResult, VQASample
from medgr2.interfaces import GradeRequest, LabelTools, RewardModel, SeedSet, StageContext
from medgr2.store import read_json, write_json, write_jsonl

if TYPE_CHECKING:
    from medgr2.config import RunConfig


def _create(context: StageContext, kind: str, name: str, options: Any = None) -> Any:
    from medgr2.plugins import ensure_registry

    return ensure_registry(context.registry).create(kind, name, options)


def train_reward_model(rm: RewardModel, train: Sequence[GradedExample], held_out: Sequence[GradedExample],
                       context: StageContext, calibrator: str | None = "grades") -> TrainResult:
    """Train (or continue training) ``rm`` under ``context.work_dir``.

    With ``held_out``, the calibration report lands next to the checkpoint: written by the reward
    model itself, or else by the ``calibrator`` (a registered :class:`~medgr2.interfaces.Calibrator`).
    """
    if not train:
        from medgr2.stages import StageFailed

        raise StageFailed("reward", "no graded examples to train R_φ on")
    context.work_dir.mkdir(parents=True, exist_ok=True)
    result = rm.train(train, context, eval_examples=held_out)
    folder = Path(result.checkpoint)
    if held_out and calibrator and not (folder / artifacts.CALIBRATION).is_file():
        scores = rm.score(held_out, context)
        cal = _create(context, "calibrator", calibrator).write(
            folder, scores, [e.target for e in held_out], [e.grade for e in held_out], rm.version)
        result = result.model_copy(update={"metrics": {
            **result.metrics, **{f"heldout_{k}": float(cal[k]) for k in ("spearman", "mse", "pairwise_accuracy")}}})
    return result


def reference_samples(config: RunConfig, seed: SeedSet, context: StageContext) -> list[VQASample]:
    """The run's train-split VQA samples: ready-made ones plus questions label-built from the train items
    (``evaluation.question_builder``). They seed the graded set when nothing else gives reference text."""
    samples = [s for s in seed.samples if s.split == "train"]
    items = [i for i in seed.items if i.split == "train"]
    if items:
        spec = config.evaluation.question_builder
        samples += list(_create(context, "generator", spec.name, spec.options).generate(items, context).samples)
    return samples


def grade_request(config: RunConfig, seed: SeedSet, context: StageContext,
                  samples: Sequence[VQASample] | None = None) -> GradeRequest:
    """What the graded-set builder gets: ``reward.grade_sources``' train-split items and samples, and the
    run's reference samples (``samples`` replaces them, as ``medgr2 train-rm --samples`` does)."""
    items, given = [], []
    for spec in config.reward.grade_sources:
        loaded = _create(context, "dataset", spec.name, spec.options).load()
        items += [i for i in loaded.items if i.split in (None, "train")]
        given += [s for s in loaded.samples if s.split in (None, "train")]
    fallback = list(samples) if samples is not None else (
        [] if config.reward.grade_sources else reference_samples(config, seed, context))
    return GradeRequest(items=tuple(items), samples=tuple(given), fallback_samples=tuple(fallback),
                        seed=config.seed)


def init_reward_model(config: RunConfig, seed: SeedSet, context: StageContext,
                      samples: Sequence[VQASample] | None = None) -> TrainResult:
    """reward-init: build the graded set with ``reward.grade_set`` (plus, with ``reward.judge`` and
    ``reward.judge_seed_samples``, judge scores of the run's samples), train R_φ v0 on it, and write its
    calibration — overall and, when the set mixes origins (grades and judge), per origin.

    Writes ``grades-train.jsonl``, ``grades-heldout.jsonl``, ``result.json`` and, with a judge,
    ``judge-ledger.json`` into ``context.work_dir``.
    """
    import dataclasses

    cfg = config.reward
    judge = _create(context, "generator", cfg.judge.name, cfg.judge.options) \
        if cfg.judge is not None and cfg.judge_seed_samples else None
    request = dataclasses.replace(grade_request(config, seed, context, samples), judge=judge,
                                  judge_samples=cfg.judge_seed_samples if judge is not None else 0)
    builder = _create(context, "grade_set", cfg.grade_set.name, cfg.grade_set.options)
    graded = builder.build(request, context)
    write_jsonl(context.work_dir / artifacts.GRADES_TRAIN, graded.train)
    write_jsonl(context.work_dir / artifacts.GRADES_HELDOUT, graded.held_out)
    rm = _create(context, "reward_model", cfg.model.name, cfg.model.options)
    result = train_reward_model(rm, graded.train, graded.held_out, context, cfg.calibrator)
    metrics = {**result.metrics, **_origin_counts(graded.train, "train"),
               **_calibrate_by_origin(rm, graded.held_out, Path(result.checkpoint), context, cfg.calibrator)}
    if judge is not None:
        metrics.update(_judge_costs(judge, context))
    result = result.model_copy(update={"metrics": metrics})
    write_json(context.work_dir / artifacts.RESULT, result)
    return result


def _origin_counts(examples: Sequence[GradedExample], part: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for e in examples:
        counts[f"{part}_{e.origin}"] = counts.get(f"{part}_{e.origin}", 0.0) + 1
    return counts


def _calibrate_by_origin(rm: RewardModel, held_out: Sequence[GradedExample], checkpoint: Path,
                         context: StageContext, calibrator: str | None) -> dict[str, float]:
    """Calibration of each origin's held-out part (``<checkpoint>/by-origin/<origin>/``) when there are several."""
    origins = sorted({e.origin for e in held_out})
    if len(origins) < 2 or not calibrator:
        return {}
    out: dict[str, float] = {}
    for origin in origins:
        part = [e for e in held_out if e.origin == origin]
        cal = _create(context, "calibrator", calibrator).write(
            checkpoint / "by-origin" / origin, rm.score(part, context), [e.target for e in part],
            [e.grade for e in part], rm.version)
        out.update({f"heldout_{origin}_{k}": float(cal[k]) for k in ("spearman", "mse", "pairwise_accuracy")})
        out[f"heldout_{origin}_n"] = float(len(part))
    return out


def _judge_costs(judge: Any, context: StageContext) -> dict[str, float]:
    """The judge's requests and cost (written to ``judge-ledger.json``), for the run's ledger."""
    ledger = getattr(judge, "last_ledger", None)
    if ledger is None:
        return {}
    write_json(context.work_dir / artifacts.JUDGE_LEDGER, ledger)
    return {"judge_requests": float(ledger.requests), "judge_cost_usd": float(ledger.cost_usd),
            "judge_input_tokens": float(ledger.input_tokens), "judge_output_tokens": float(ledger.output_tokens)}


def score_samples(rm: RewardModel, samples: Sequence[VQASample], context: StageContext) -> list[VQASample]:
    """Copies of ``samples`` with ``reward = RewardBreakdown(total, {"r_phi": total}, rm.version)``."""
    scores = rm.score([RewardInput.from_sample(s) for s in samples], context)
    if len(scores) != len(samples):
        raise RuntimeError(f"the reward model returned {len(scores)} scores for {len(samples)} samples")
    return [s.model_copy(update={"reward": RewardBreakdown(total=float(x), terms={"r_phi": float(x)},
                                                           model_version=rm.version)})
            for s, x in zip(samples, scores, strict=True)]


@dataclass
class UpdateOutcome:
    """What reward-update decided."""

    checkpoint: str
    version: str
    labelled: int = 0
    replay: int = 0
    promoted: bool = False
    reason: str = ""
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    judge: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _calibration_of(checkpoint: str | Path) -> dict[str, float]:
    path = Path(checkpoint) / artifacts.CALIBRATION
    if not path.is_file():
        return {}
    cal = read_json(path)
    return {k: float(cal[k]) for k in ("spearman", "mse", "pairwise_accuracy") if isinstance(cal.get(k), (int, float))}


def update_reward_model(config: RunConfig, rm: RewardModel, rm_path: Path, policy: Path,
                        samples: Sequence[VQASample], history: Sequence[GradedExample],
                        held_out: Sequence[GradedExample], context: StageContext) -> UpdateOutcome:
    """reward-update: label ``samples`` with the policy, retrain R_φ on them plus replay of ``history``,
    and promote the new R_φ only when its held-out calibration holds (the promotion gate).

    Replay is sized so that a retrain never sees fewer than ``reward.min_retrain_examples`` examples;
    when even all of ``history`` cannot make up that number, R_φ is kept and the reason recorded.
    The gate keeps the current R_φ when the new one's held-out pairwise accuracy falls by more than
    ``reward.promotion_tolerance``. Writes ``labelled.jsonl``, ``result.json`` and ``gate.json``.
    """
    cfg = config.reward
    evaluator = config.evaluation.evaluator
    tools = LabelTools(
        evaluator=_create(context, "evaluator", evaluator.name, evaluator.options) if evaluator else None,
        judge=_create(context, "generator", cfg.judge.name, cfg.judge.options) if cfg.judge else None)
    labeller = _create(context, "policy_labeller", cfg.labelling)
    labelled = labeller.label(samples, policy, context, tools)
    write_jsonl(context.work_dir / artifacts.LABELLED, labelled)
    keep = UpdateOutcome(checkpoint=str(rm_path), version=rm.version, labelled=len(labelled),
                         judge=_judge_costs(tools.judge, context) if cfg.labelling == "judge" else {})
    if not labelled:
        keep.reason = "no policy samples to label"
        keep.warnings.append(f"reward-update (cycle {context.cycle}): no policy samples to label; R_φ kept")
        return _write_gate(context, keep)
    ratio = cfg.replay_fraction / max(1e-9, 1 - cfg.replay_fraction)
    n_replay = min(len(history), max(int(len(labelled) * ratio), cfg.min_retrain_examples - len(labelled)))
    replay = random.Random(config.seed + context.cycle).sample(list(history), n_replay) if n_replay > 0 else []
    keep.replay = len(replay)
    if len(labelled) + len(replay) < cfg.min_retrain_examples:
        keep.reason = (f"only {len(labelled)} labelled + {len(replay)} replay examples, fewer than "
                       f"reward.min_retrain_examples={cfg.min_retrain_examples}")
        keep.warnings.append(f"reward-update (cycle {context.cycle}): R_φ kept: {keep.reason}")
        return _write_gate(context, keep)
    result = train_reward_model(rm, [*labelled, *replay], held_out, context, cfg.calibrator)
    write_json(context.work_dir / artifacts.RESULT, result)
    before, after = _calibration_of(rm_path), _calibration_of(result.checkpoint)
    keep.before, keep.after = before, after
    drop = before.get("pairwise_accuracy", 0.0) - after.get("pairwise_accuracy", 0.0) if before and after else 0.0
    if held_out and drop > cfg.promotion_tolerance:
        keep.reason = (f"held-out pairwise accuracy fell from {before['pairwise_accuracy']:.3f} to "
                       f"{after['pairwise_accuracy']:.3f} (tolerance {cfg.promotion_tolerance})")
        keep.warnings.append(f"reward-update (cycle {context.cycle}): retrained R_φ {result.version} not promoted: "
                             f"{keep.reason}")
        return _write_gate(context, keep)
    promoted = UpdateOutcome(checkpoint=result.checkpoint, version=result.version, labelled=len(labelled),
                             replay=len(replay), promoted=True, before=before, after=after, judge=keep.judge,
                             reason="held-out calibration held" if held_out else "no held-out set to check")
    return _write_gate(context, promoted)


def _write_gate(context: StageContext, outcome: UpdateOutcome) -> UpdateOutcome:
    import dataclasses

    write_json(context.work_dir / artifacts.GATE, dataclasses.asdict(outcome))
    return outcome
