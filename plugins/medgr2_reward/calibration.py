"""Calibration of a reward model on held-out graded data: ``calibration.json`` and a plot.

Reported: Spearman correlation of scores with targets, MSE, mean and std of the scores per grade
(target value), whether the grade means are ordered like their targets, and the pairwise
ordering accuracy: over every pair of examples with different targets, the share the scores
order the same way (ties count one half), overall and per pair of targets.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medgr2.store import atomic_write_text


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation by ``scipy.stats.spearmanr`` (average ranks for ties); NaN when
    either side is constant or has fewer than 2 values (checked here, so scipy is not asked and
    raises no ``ConstantInputWarning``)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"spearman needs two sequences of one length (got {len(x)} and {len(y)})")
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def _pair_accuracy(high: np.ndarray, low: np.ndarray) -> tuple[float, int]:
    """Share of (h, l) pairs with h > l (ties one half), and the number of pairs."""
    low_sorted = np.sort(low)
    below = np.searchsorted(low_sorted, high, side="left")
    ties = np.searchsorted(low_sorted, high, side="right") - below
    pairs = len(high) * len(low)
    return float((below.sum() + 0.5 * ties.sum()) / pairs), pairs


def calibration_metrics(scores: Sequence[float], targets: Sequence[float],
                        grades: Sequence[int] | None = None) -> dict[str, Any]:
    """Every calibration figure for held-out ``scores`` against their ``targets``."""
    s, t = np.asarray(scores, dtype=float), np.asarray(targets, dtype=float)
    if len(s) != len(t) or not len(s):
        raise ValueError(f"calibration needs as many scores as targets (got {len(s)} and {len(t)}), at least one")
    levels = sorted(set(t.tolist()), reverse=True)
    per: dict[str, Any] = {}
    for v in levels:
        sel = s[t == v]
        g = sorted({grades[i] for i in np.flatnonzero(t == v)}) if grades is not None else []
        per[f"{v:g}"] = {"target": v, "grades": g, "n": len(sel), "mean": float(sel.mean()),
                         "std": float(sel.std()), "min": float(sel.min()), "max": float(sel.max())}
    means = [per[f"{v:g}"]["mean"] for v in levels]
    pairwise: dict[str, float] = {}
    hit, total = 0.0, 0
    for i, hi in enumerate(levels):
        for lo in levels[i + 1:]:
            acc, n = _pair_accuracy(s[t == hi], s[t == lo])
            pairwise[f"{hi:g}>{lo:g}"] = acc
            hit += acc * n
            total += n
    return {
        "n": len(s),
        "mse": float(np.mean((s - t) ** 2)),
        "mae": float(np.mean(np.abs(s - t))),
        "spearman": spearman(s, t),
        "per_target": per,
        "means_ordered": bool(all(a > b for a, b in itertools.pairwise(means))),
        "pairwise_accuracy": hit / total if total else float("nan"),
        "pairwise_by_targets": pairwise,
    }


def write_calibration(folder: Path, scores: Sequence[float], targets: Sequence[float],
                      grades: Sequence[int] | None = None, *, version: str = "",
                      title: str = "") -> dict[str, Any]:
    """Write ``calibration.json`` and ``calibration.png`` into ``folder``; return the metrics."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = calibration_metrics(scores, targets, grades)
    metrics["model_version"] = version
    atomic_write_text(folder / "calibration.json", json.dumps(metrics, indent=2) + "\n")
    plot_calibration(folder / "calibration.png", scores, targets, metrics, title or version)
    return metrics


def plot_calibration(path: Path, scores: Sequence[float], targets: Sequence[float],
                     metrics: dict[str, Any], title: str = "") -> None:
    """Scores per target (box plot with points) beside the target line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, t = np.asarray(scores, dtype=float), np.asarray(targets, dtype=float)
    levels = sorted(set(t.tolist()))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    data = [s[t == v] for v in levels]
    ax.boxplot(data, positions=range(len(levels)), widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for k, d in enumerate(data):
        ax.scatter(k + rng.uniform(-0.18, 0.18, len(d)), d, s=4, alpha=0.3)
    ax.plot(range(len(levels)), levels, "k--", lw=1, label="target")
    ax.set_xticks(range(len(levels)), [f"{v:g}" for v in levels])
    ax.set_xlabel("target reward (grade)")
    ax.set_ylabel("R_phi score")
    ax.set_ylim(-6.5, 10.5)
    ax.set_title(f"{title}\nSpearman {metrics['spearman']:.3f} · pairwise {metrics['pairwise_accuracy']:.3f}"
                 f" · n {metrics['n']}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


class GradeCalibrator:
    """The ``grades`` :class:`~medgr2.interfaces.Calibrator`: ``calibration.json`` + plot per grade."""

    def __init__(self, options: Any = None):
        self.options = options

    def write(self, folder: Path, scores: Sequence[float], targets: Sequence[float], grades: Sequence[int],
              version: str) -> dict[str, Any]:
        return write_calibration(folder, scores, targets, grades, version=version)
