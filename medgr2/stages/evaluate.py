"""The evaluation stage: run an evaluator over VQA samples, or score existing predictions.

Both return an :class:`~medgr2.data.EvalReport` under a *named* scorer (``medgr2 eval scorers``
lists them); the CLI (``medgr2 eval run|score``) and the loop call these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medgr2.data import EvalReport, Prediction, VQASample
from medgr2.interfaces import Evaluator, StageContext
from medgr2.registry import Registry


def resolve_scorer(
    scorer: str | Callable[..., Any], registry: Registry | None = None, options: dict[str, Any] | None = None
) -> tuple[str, Callable[..., Any]]:
    """``(name, function)`` of a scorer given by registered name (or as a function)."""
    if callable(scorer):
        return getattr(scorer, "__name__", "custom"), scorer
    if registry is None:
        from medgr2.plugins import get_registry

        registry = get_registry()
    return scorer, registry.create("scorer", scorer, options)


def score_predictions(
    preds: Sequence[Prediction],
    scorer: str | Callable[..., Any] = "medgr2",
    *,
    registry: Registry | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    model: str | None = None,
) -> EvalReport:
    """Score predictions under ``scorer`` and compute every metric (accuracy with invalid answers
    counted wrong and skipped, per-group breakdowns, macro F1, balanced accuracy, AUROC when
    option scores exist, bootstrap 95 % CIs). Options missing from a prediction are parsed from
    its question text."""
    from medgr2_eval.metrics import build_report
    from medgr2_eval.scoring import options_of, score_all

    name, fn = resolve_scorer(scorer, registry)
    options = options_of(preds)
    verdicts = score_all(preds, fn, options)
    from medgr2_eval.parsing import gt_index

    meta = {
        "n_without_options": sum(1 for o in options if not o),
        "n_gt_not_an_option": sum(
            1 for p, o in zip(preds, options) if o and gt_index(o, p.gt_answer) is None
        ),
    }
    return build_report(
        preds, verdicts, name, options=options, bootstrap=bootstrap, seed=seed, model=model, meta=meta
    )


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

    The scorer name reaches the evaluator as ``context.extras["scorer"]``.
    """
    if not samples:
        raise ValueError(
            "no samples to evaluate: the evaluation set is empty (check evaluation.sources "
            "or the test split of data.sources)"
        )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    context.extras["scorer"] = scorer
    return evaluator.evaluate(samples, Path(model_path), output_dir, context)
