"""The generic reward stages: train R_φ on graded examples, score samples with it.

Both work through the :class:`~medgr2.interfaces.RewardModel` protocol only. How graded examples
are built (the 4-grade scheme from reports, labelling policy samples) belongs to the reward plugin,
which registers those helpers as functions (``reward.grade_set``, ``reward.label_policy_samples``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medgr2.data import GradedExample, RewardBreakdown, RewardInput, TrainResult, VQASample
from medgr2.interfaces import RewardModel, StageContext


def train_reward_model(rm: RewardModel, train: Sequence[GradedExample], held_out: Sequence[GradedExample],
                       context: StageContext) -> TrainResult:
    """Train (or continue training) ``rm`` under ``context.work_dir``.

    With ``held_out``, the calibration report lands next to the checkpoint: written by the reward
    model itself, or else by the registered ``reward.calibration`` function, for any model.
    """
    context.work_dir.mkdir(parents=True, exist_ok=True)
    result = rm.train(train, context, eval_examples=held_out)
    folder = Path(result.checkpoint)
    from medgr2.plugins import ensure_registry

    registry = ensure_registry(context.registry)
    if held_out and not (folder / "calibration.json").is_file() and ("function", "reward.calibration") in registry:
        write_calibration = registry.get("function", "reward.calibration")
        scores = rm.score(held_out, context)
        cal = write_calibration(folder, scores, [e.target for e in held_out], [e.grade for e in held_out],
                                version=rm.version)
        result = result.model_copy(update={"metrics": {
            **result.metrics, **{f"heldout_{k}": float(cal[k]) for k in ("spearman", "mse", "pairwise_accuracy")}}})
    return result


def score_samples(rm: RewardModel, samples: Sequence[VQASample], context: StageContext) -> list[VQASample]:
    """Copies of ``samples`` with ``reward = RewardBreakdown(total, {"r_phi": total}, rm.version)``."""
    scores = rm.score([RewardInput.from_sample(s) for s in samples], context)
    if len(scores) != len(samples):
        raise RuntimeError(f"the reward model returned {len(scores)} scores for {len(samples)} samples")
    return [s.model_copy(update={"reward": RewardBreakdown(total=float(x), terms={"r_phi": float(x)},
                                                           model_version=rm.version)})
            for s, x in zip(samples, scores, strict=True)]
