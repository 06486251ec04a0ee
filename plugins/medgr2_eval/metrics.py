"""Vectorised evaluation metrics (numpy only) and the :class:`~medgr2.data.EvalReport` builder.

Per group (all, each modality, question type, source dataset):

* ``accuracy``: correct / n, invalid answers counted wrong; ``accuracy_valid_only``: correct /
  valid (``None`` when nothing is valid); ``invalid``: answers naming no option;
* ``ci95``: 95 % percentile-bootstrap interval of the accuracy. Resampling n items with
  replacement and averaging 0/1 outcomes is exactly a ``Binomial(n, acc) / n`` draw, so the
  bootstrap is drawn that way (identical distribution, O(B) instead of O(B·n));
* ``macro_f1`` and ``balanced_accuracy`` over answer classes (the normalised option text): an
  invalid answer predicts no class (a false negative of its ground-truth class);
* ``auroc``: only when option scores exist. Each item's option scores (log-probabilities) are
  turned into probabilities with a softmax over its options; every (item, option) pair is a
  binary case "is the ground truth", pooled over the group; ties get average ranks. Groups
  without scores get ``None``: AUROC is never computed from hard labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medgr2.data import EvalReport, GroupMetrics, Prediction
from medgr2_eval.parsing import normalize


@dataclass
class Outcomes:
    """Per-item arrays of a scored prediction set (length n), plus the flat option scores.

    Option scores of the ``m`` items that have them are concatenated in ``score_prob`` (each
    item's softmax over its options), with ``score_item`` (the item index) and ``score_is_gt``.
    """

    correct: np.ndarray  # bool
    valid: np.ndarray  # bool
    gt_class: np.ndarray  # int, class code of the ground truth
    pred_class: np.ndarray  # int, class code of the chosen answer, -1 when invalid
    score_prob: np.ndarray  # float, flat
    score_item: np.ndarray  # int, flat
    score_is_gt: np.ndarray  # bool, flat

    @property
    def n_scored(self) -> int:
        """Items with option scores."""
        return len(np.unique(self.score_item))


def outcomes(
    preds: Sequence[Prediction], verdicts: Sequence[Any], options: Sequence[Sequence[str]] | None = None
) -> Outcomes:
    """Arrays of outcomes from predictions and their verdicts (``Verdict``-like objects).

    ``options`` overrides each prediction's options (e.g. options parsed from the question).
    """
    codes: dict[str, int] = {}
    n = len(preds)
    gt_class = np.empty(n, dtype=np.int64)
    pred_class = np.full(n, -1, dtype=np.int64)
    correct = np.fromiter((v.correct for v in verdicts), dtype=bool, count=n)
    valid = np.fromiter((v.valid for v in verdicts), dtype=bool, count=n)
    flat: list[float] = []
    item: list[int] = []
    is_gt: list[bool] = []
    for i, (p, v) in enumerate(zip(preds, verdicts)):
        g = normalize(p.gt_answer)
        gt_class[i] = codes.setdefault(g, len(codes))
        if v.valid:
            pred_class[i] = (
                gt_class[i] if v.correct else codes.setdefault(normalize(v.chosen or ""), len(codes))
            )
        scores = p.option_scores
        if scores is not None:
            opts = p.options if options is None else options[i]
            if len(scores) == len(opts) > 1:
                marks = [normalize(o) == g for o in opts]
                if any(marks):
                    flat.extend(scores)
                    item.extend([i] * len(opts))
                    is_gt.extend(marks)
    s = np.asarray(flat, dtype=np.float64)
    it = np.asarray(item, dtype=np.int64)
    if len(s):  # softmax within each item (items are contiguous runs of ``it``)
        starts = np.flatnonzero(np.r_[True, it[1:] != it[:-1]])
        e = np.exp(s - np.repeat(np.maximum.reduceat(s, starts), np.diff(np.r_[starts, len(s)])))
        s = e / np.repeat(np.add.reduceat(e, starts), np.diff(np.r_[starts, len(s)]))
    return Outcomes(correct, valid, gt_class, pred_class, s, it, np.asarray(is_gt, dtype=bool))


def _bootstrap_ci(n: np.ndarray, acc: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """(G, 2) percentile intervals from ``b`` binomial bootstrap draws per group."""
    draws = rng.binomial(n[:, None], acc[:, None], size=(len(n), b)) / np.maximum(n, 1)[:, None]
    return np.percentile(draws, [2.5, 97.5], axis=1).T


def _class_metrics(g: np.ndarray, n_groups: int, o: Outcomes) -> tuple[np.ndarray, np.ndarray]:
    """Macro F1 and balanced accuracy per group (NaN where undefined)."""
    n_classes = int(max(o.gt_class.max(initial=0), o.pred_class.max(initial=0))) + 1
    gt_key = g * n_classes + o.gt_class
    has_pred = o.pred_class >= 0
    pred_key = g[has_pred] * n_classes + o.pred_class[has_pred]
    keys, inv = np.unique(np.concatenate([gt_key, pred_key]), return_inverse=True)
    gt_inv, pred_inv = inv[: len(gt_key)], inv[len(gt_key) :]
    support = np.bincount(gt_inv, minlength=len(keys)).astype(float)
    tp = np.bincount(gt_inv, weights=o.correct.astype(float), minlength=len(keys))
    predicted = np.bincount(pred_inv, minlength=len(keys)).astype(float)
    denom = support + predicted  # = 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    key_group = keys // n_classes
    n_labels = np.bincount(key_group, minlength=n_groups).astype(float)
    macro_f1 = np.bincount(key_group, weights=f1, minlength=n_groups) / np.where(
        n_labels > 0, n_labels, np.nan
    )
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    n_sup = np.bincount(key_group, weights=(support > 0).astype(float), minlength=n_groups)
    bal = np.bincount(key_group, weights=recall, minlength=n_groups) / np.where(n_sup > 0, n_sup, np.nan)
    return macro_f1, bal


def _auroc(g: np.ndarray, n_groups: int, o: Outcomes) -> np.ndarray:
    """Pooled option-level AUROC per group (NaN where no scores or a single class)."""
    out = np.full(n_groups, np.nan)
    if not len(o.score_prob):
        return out
    score, label, group = o.score_prob, o.score_is_gt, g[o.score_item]
    order = np.lexsort((score, group))
    s_sorted, g_sorted = score[order], group[order]
    # average ranks of ties within a group
    new_run = np.ones(len(order), dtype=bool)
    new_run[1:] = (s_sorted[1:] != s_sorted[:-1]) | (g_sorted[1:] != g_sorted[:-1])
    run_id = np.cumsum(new_run) - 1
    pos = np.arange(len(order), dtype=float)
    run_mean = np.bincount(run_id, weights=pos) / np.bincount(run_id)
    first = np.ones(len(order), dtype=bool)
    first[1:] = g_sorted[1:] != g_sorted[:-1]
    group_start = np.zeros(n_groups)
    group_start[g_sorted[first]] = pos[first]
    ranks = np.empty(len(order))
    ranks[order] = run_mean[run_id] - group_start[g_sorted] + 1
    n_pos = np.bincount(group, weights=label.astype(float), minlength=n_groups)
    n_neg = np.bincount(group, minlength=n_groups) - n_pos
    rank_sum = np.bincount(group, weights=np.where(label, ranks, 0.0), minlength=n_groups)
    ok = (n_pos > 0) & (n_neg > 0)
    out[ok] = (rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    return out


def _opt(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 6)


def group_metrics(
    o: Outcomes, labels: Sequence[str | None] | None = None, *, bootstrap: int = 1000, seed: int = 0
) -> dict[str, GroupMetrics]:
    """Metrics per group label (``None`` labels become ``"unknown"``); one ``"all"`` group when
    ``labels`` is ``None``."""
    if labels is None:
        names, g = ["all"], np.zeros(len(o.correct), dtype=np.int64)
    else:
        raw = np.array(["unknown" if x is None else str(x) for x in labels], dtype=object)
        names_arr, g = np.unique(raw, return_inverse=True)
        names, g = [str(x) for x in names_arr], g.astype(np.int64)
    k = len(names)
    n = np.bincount(g, minlength=k)
    correct = np.bincount(g, weights=o.correct, minlength=k).round().astype(int)
    invalid = np.bincount(g, weights=~o.valid, minlength=k).round().astype(int)
    acc = correct / np.maximum(n, 1)
    ci = _bootstrap_ci(n, acc, bootstrap, np.random.default_rng(seed)) if bootstrap else None
    f1, bal = _class_metrics(g, k, o) if len(g) else (np.full(k, np.nan), np.full(k, np.nan))
    auc = _auroc(g, k, o)
    out = {}
    for j, name in enumerate(names):
        n_valid = n[j] - invalid[j]
        out[name] = GroupMetrics(
            n=int(n[j]),
            correct=int(correct[j]),
            invalid=int(invalid[j]),
            accuracy=round(float(acc[j]), 6),
            accuracy_valid_only=round(correct[j] / n_valid, 6) if n_valid else None,
            ci95=(round(float(ci[j, 0]), 6), round(float(ci[j, 1]), 6)) if ci is not None else None,
            macro_f1=_opt(f1[j]),
            balanced_accuracy=_opt(bal[j]),
            auroc=_opt(auc[j]),
        )
    return out


def build_report(
    preds: Sequence[Prediction],
    verdicts: Sequence[Any],
    scorer: str,
    *,
    options: Sequence[Sequence[str]] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    model: str | None = None,
    meta: dict[str, Any] | None = None,
) -> EvalReport:
    """The :class:`EvalReport` of scored predictions: overall plus per modality, question type and
    dataset (a breakdown is left empty when no prediction carries that field)."""
    if not preds:
        raise ValueError("no predictions to score: the predictions file or sample set is empty")
    o = outcomes(preds, verdicts, options)
    kw = {"bootstrap": bootstrap, "seed": seed}
    overall = group_metrics(o, None, **kw)["all"]

    def by(field: str) -> dict[str, GroupMetrics]:
        labels = [getattr(p, field) for p in preds]
        return group_metrics(o, labels, **kw) if any(x is not None for x in labels) else {}

    n_scored = o.n_scored
    info = {
        "invalid_rate": round(overall.invalid / overall.n, 6),
        "bootstrap": bootstrap,
        "seed": seed,
        "n_with_option_scores": n_scored,
        **(meta or {}),
    }
    return EvalReport(
        scorer=scorer,
        overall=overall,
        by_modality=by("modality"),
        by_question_type=by("question_type"),
        by_dataset=by("dataset"),
        model=model,
        meta=info,
    )
