"""Runners producing the studies' inputs from registered components (a trainer, an evaluator, filters).

Each runner trains one policy per cell from the same base model, evaluates it, and keeps every
artifact under ``work_dir/<cell>/`` (``model/``, ``eval/predictions.jsonl``, ``eval/report.json``);
a cell whose ``done.json`` exists is not redone, so an interrupted study resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from medgr2 import artifacts
from medgr2.data import EvalReport, Prediction, VQASample
from medgr2.interfaces import Evaluator, PolicyTrainer, StageContext
from medgr2.store import read_json, read_jsonl, write_json
from medgr2_eval.study_tables import TransferTable, transfer_matrix


def group_of(sample: VQASample, by: str) -> str:
    """The sample's group under ``by`` (``modality`` or ``question_type``)."""
    if by == "modality":
        return sample.modality.value
    if by == "question_type":
        return sample.question_type.value
    raise ValueError(f"by={by!r}: use modality or question_type")


def _cell(
    trainer: PolicyTrainer,
    evaluator: Evaluator,
    train: Sequence[VQASample],
    eval_samples: Sequence[VQASample],
    base_model: Path,
    cell_dir: Path,
    context: StageContext,
    scorer: str,
) -> dict[str, Any]:
    """Train on ``train`` then evaluate; returns (and records) the cell's summary."""
    from medgr2.stages.evaluate import evaluate

    done = cell_dir / "done.json"
    if done.is_file():
        return read_json(done)
    ctx = replace(context, work_dir=cell_dir)
    result = trainer.train(list(train), base_model, cell_dir / "model", ctx)
    report: EvalReport = evaluate(
        evaluator, eval_samples, Path(result.checkpoint), cell_dir / "eval", ctx, scorer
    )
    summary = {
        "n_train": len(train),
        "checkpoint": result.checkpoint,
        "accuracy": report.overall.accuracy,
        "accuracy_valid_only": report.overall.accuracy_valid_only,
        "invalid": report.overall.invalid,
        "n_eval": report.overall.n,
    }
    write_json(done, summary)
    return summary


def run_transfer(
    train_samples: Sequence[VQASample],
    eval_samples: Sequence[VQASample],
    by: str,
    trainer: PolicyTrainer,
    evaluator: Evaluator,
    base_model: Path,
    work_dir: Path,
    context: StageContext,
    scorer: str = "medgr2",
    groups: Sequence[str] | None = None,
) -> TransferTable:
    """Train one policy per group of ``train_samples`` and evaluate each on all of ``eval_samples``.

    ``groups`` restricts (and orders) the training groups; the table's columns are the groups of
    the evaluation set.
    """
    present = sorted({group_of(s, by) for s in train_samples})
    rows = list(groups) if groups is not None else present
    missing = [g for g in rows if g not in present]
    if missing:
        raise ValueError(f"no training samples for {by} {', '.join(missing)} (present: {', '.join(present)})")
    preds: dict[str, list[Prediction]] = {}
    for g in rows:
        if context.stop.is_set():
            break
        cell = Path(work_dir) / f"train-{g}"
        _cell(
            trainer,
            evaluator,
            [s for s in train_samples if group_of(s, by) == g],
            eval_samples,
            base_model,
            cell,
            context,
            scorer,
        )
        preds[g] = read_jsonl(cell / "eval" / artifacts.PREDICTIONS, Prediction)
    cols = sorted({group_of(s, by) for s in eval_samples})
    return transfer_matrix(preds, by, scorer, groups=cols)


def run_efficiency(
    scored: Sequence[VQASample],
    eval_samples: Sequence[VQASample],
    sizes: Sequence[int],
    seeds: Sequence[int],
    trainer: PolicyTrainer,
    evaluator: Evaluator,
    base_model: Path,
    work_dir: Path,
    context: StageContext,
    *,
    registry: Any,
    scorer: str = "medgr2",
    full: bool = True,
) -> list[dict[str, Any]]:
    """TopK vs RandK over ``sizes`` × ``seeds`` (plus ``full``: all of ``scored``, unfiltered).

    ``scored`` samples carry their reward (``sample.reward``); TopK keeps the ``k`` highest
    (the registered ``top_k`` filter), RandK ``k`` at random (``rand_k``, seeded). The seed also
    seeds training. Returns rows ``{method, size, seed, accuracy, ...}`` for
    :func:`medgr2_eval.study_tables.efficiency_curves`.
    """
    if not scored:
        raise ValueError("no scored samples to select from")
    too_big = [k for k in sizes if k > len(scored)]
    if too_big:
        raise ValueError(f"sizes {too_big} exceed the {len(scored)} scored samples")
    plan: list[tuple[str, int, int, tuple[str, dict[str, Any]] | None]] = []
    for k in sizes:
        for seed in seeds:
            plan.append(("topk", k, seed, ("top_k", {"k": k})))
            plan.append(("randk", k, seed, ("rand_k", {"k": k, "seed": seed})))
    if full:
        plan += [("full", len(scored), seed, None) for seed in seeds]
    rows = []
    for method, k, seed, flt in plan:
        if context.stop.is_set():
            break
        ctx = replace(context, seed=seed)
        if flt is None:
            chosen = list(scored)
        else:
            decisions = registry.create("filter", flt[0], flt[1]).apply(scored, [], ctx)
            chosen = [s for s, d in zip(scored, decisions, strict=True) if d.keep]
        summary = _cell(
            trainer,
            evaluator,
            chosen,
            eval_samples,
            base_model,
            Path(work_dir) / f"{method}-k{k}-seed{seed}",
            ctx,
            scorer,
        )
        rows.append({"method": method, "size": k, "seed": seed, **summary})
    return rows
