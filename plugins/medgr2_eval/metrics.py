"""Evaluation metrics (scikit-learn; a binomial bootstrap in numpy) and the
:class:`~medgr2.data.EvalReport` builder.

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
  binary case "is the ground truth", pooled over the group; ties count one half. Groups
  without scores get ``None``: AUROC is never computed from hard labels.

F1, balanced accuracy and AUROC are scikit-learn's (``sklearn.metrics``, imported when first
used). ``benchmarks/bench_libraries.py`` compares them with the former vectorised numpy code: equal
to 1e-15; at 100k predictions in 54 groups scikit-learn takes 0.54 s for F1 + balanced accuracy
(numpy 0.08 s) and 0.37 s for AUROC (numpy 0.27 s), which the ``eval score`` path affords (its goal,
< 5 s CPU for 100k predictions, still holds: 2.8 s in ``benchmarks/bench_eval_scoring.py``). The
bootstrap stays hand-written: see :func:`_bootstrap_ci`.
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
    """(G, 2) percentile intervals from ``b`` binomial bootstrap draws per group.

    Hand-written on purpose, not ``scipy.stats.bootstrap``: the mean of n resampled 0/1 outcomes
    *is* a ``Binomial(n, acc) / n`` draw, so one ``rng.binomial`` call gives the same percentile
    interval in O(B) per group instead of scipy's O(B·n) resampling. ``benchmarks/bench_libraries.py``
    (100k predictions, 54 groups, B = 1000, shared 2-core machine): 0.006 s here against 5.3 s for
    scipy's percentile bootstrap (about 900x), intervals equal within Monte Carlo error (max
    difference 0.003 where the widest half-width is 0.021). scipy also refuses a group of one item,
    which a breakdown by dataset can have; the binomial draw gives it the interval (0, 0) or (1, 1).
    """
    draws = rng.binomial(n[:, None], acc[:, None], size=(len(n), b)) / np.maximum(n, 1)[:, None]
    return np.percentile(draws, [2.5, 97.5], axis=1).T


def _group_slices(g: np.ndarray, n_groups: int) -> tuple[np.ndarray, list[slice]]:
    """An order that sorts ``g`` and the slice of that order holding each group 0..n_groups-1."""
    ends = np.cumsum(np.bincount(g, minlength=n_groups)).tolist()
    return np.argsort(g, kind="stable"), [slice(a, b) for a, b in zip([0, *ends[:-1]], ends)]


def _class_metrics(g: np.ndarray, n_groups: int, o: Outcomes) -> tuple[np.ndarray, np.ndarray]:
    """Macro F1 and balanced accuracy per group (NaN for an empty group), from scikit-learn's
    per-class F1 and recall (``precision_recall_fscore_support``, one call per group).

    Classes are those named by a ground truth or a valid answer of the group; an invalid answer
    (class -1) is outside ``labels``, so it only costs its ground-truth class a false negative.
    Macro F1 averages F1 over those classes; balanced accuracy is scikit-learn's definition, the
    mean recall over the classes present in the ground truth (``balanced_accuracy_score`` itself
    would count the -1 of invalid answers as a class and warn).
    """
    from sklearn.metrics import precision_recall_fscore_support

    macro_f1, bal = np.full(n_groups, np.nan), np.full(n_groups, np.nan)
    order, slices = _group_slices(g, n_groups)
    for j, sl in enumerate(slices):
        if sl.start == sl.stop:
            continue
        gt, pr = o.gt_class[order[sl]], o.pred_class[order[sl]]
        labels = np.union1d(gt, pr[pr >= 0])
        _, recall, f1, support = precision_recall_fscore_support(
            gt, pr, labels=labels, average=None, zero_division=0.0)
        macro_f1[j] = f1.mean()
        bal[j] = recall[support > 0].mean()
    return macro_f1, bal


def _auroc(g: np.ndarray, n_groups: int, o: Outcomes) -> np.ndarray:
    """Pooled option-level AUROC per group by ``sklearn.metrics.roc_auc_score`` (ties count one
    half); NaN where a group has no option scores or only one class."""
    out = np.full(n_groups, np.nan)
    if not len(o.score_prob):
        return out
    from sklearn.metrics import roc_auc_score

    order, slices = _group_slices(g[o.score_item], n_groups)
    for j, sl in enumerate(slices):
        label = o.score_is_gt[order[sl]]
        if label.any() and not label.all():
            out[j] = roc_auc_score(label, o.score_prob[order[sl]])
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
