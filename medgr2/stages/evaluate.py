"""The evaluation stage: run an evaluator over VQA samples.

It returns an :class:`~medgr2.data.EvalReport` under a *named* scorer; the CLI (``medgr2 eval run``,
from the evaluation plugin) and the loop call it. Scoring existing predictions belongs to the
evaluation plugin (``medgr2_eval.prediction_files.score_predictions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from medgr2.data import EvalReport, VQASample
from medgr2.interfaces import Evaluator, StageContext


def evaluate(
    evaluator: Evaluator,
    samples: Sequence[VQASample],
    model_path: Path,
    output_dir: Path,
    context: StageContext,
    scorer: str = "medgr2",
) -> EvalReport:
    """Run ``evaluator`` on ``samples`` with the policy at ``model_path``; predictions and the
    report (``predictions.jsonl``, ``report.json``, ``report.md``) go to ``output_dir``.

    The scorer name reaches the evaluator as ``context.scorer``.
    """
    if not samples:
        raise ValueError(
            "no samples to evaluate: the evaluation set is empty (check evaluation.sources "
            "or the test split of data.sources)"
        )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    import dataclasses

    context = dataclasses.replace(context, scorer=scorer)
    return evaluator.evaluate(samples, Path(model_path), output_dir, context)
