"""The paper's studies as table + plot builders (Markdown + JSON tables, PNG + SVG plots).

* :func:`transfer_matrix`: cross-modality (8×8) / cross-question-type (5×5) transfer — rows are
  the group a policy was trained on, columns the group it is evaluated on; a heatmap.
* :func:`error_transitions`: head-to-head between two prediction files of the same questions —
  correct→correct, wrong→correct, correct→wrong, wrong→wrong per group; stacked bars.
* :func:`efficiency_curves`: data efficiency, TopK vs RandK (and a large unfiltered baseline)
  over training-set sizes and seeds; mean curves with a min–max band and ±1 sd error bars.

Runners that *produce* the inputs from registered components live in
:mod:`medgr2_eval.study_cells`. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medgr2.data import Prediction
from medgr2.store import atomic_write_text, write_json

TRANSITIONS = ("c->c", "w->c", "c->w", "w->w")
"""Transition kinds: before -> after, c = correct, w = wrong (invalid answers count as wrong)."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Any, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    _pyplot().close(fig)
    return paths


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def correctness(preds: Sequence[Prediction], scorer: str | Callable[..., Any] = "medgr2") -> list[bool]:
    """Per-prediction correctness under a named scorer (invalid answers are wrong)."""
    from medgr2_eval.prediction_files import resolve_scorer
    from medgr2_eval.prediction_files import score_all

    _, fn = resolve_scorer(scorer)
    return [bool(v.correct) for v in score_all(preds, fn)]


# ---------------------------------------------------------------------------------- transfer


@dataclass
class TransferTable:
    """Accuracy of policies trained on one group (rows) evaluated on every group (columns)."""

    by: str
    scorer: str
    train_groups: list[str]
    eval_groups: list[str]
    accuracy: list[list[float | None]]
    n: list[list[int]]


def transfer_matrix(
    predictions: Mapping[str, Sequence[Prediction]],
    by: str = "modality",
    scorer: str | Callable[..., Any] = "medgr2",
    groups: Sequence[str] | None = None,
) -> TransferTable:
    """Build the transfer table from one prediction set per training group.

    Args:
        predictions: training group -> the predictions of the policy trained on that group, over
            an evaluation set covering the groups.
        by: The prediction field grouping the columns (``modality`` or ``question_type``).
        scorer: The scoring protocol.
        groups: Column order (default: every group seen, sorted); rows follow ``predictions``.
    """
    if by not in ("modality", "question_type", "dataset"):
        raise ValueError(f"by={by!r}: use modality, question_type or dataset")
    if not predictions:
        raise ValueError("no prediction sets: give one per training group")
    seen = sorted({str(getattr(p, by)) for preds in predictions.values() for p in preds})
    cols = list(groups) if groups is not None else seen
    acc_rows, n_rows = [], []
    for preds in predictions.values():
        ok = correctness(preds, scorer)
        acc_row, n_row = [], []
        for g in cols:
            hits = [c for p, c in zip(preds, ok) if str(getattr(p, by)) == g]
            n_row.append(len(hits))
            acc_row.append(round(sum(hits) / len(hits), 6) if hits else None)
        acc_rows.append(acc_row)
        n_rows.append(n_row)
    name = scorer if isinstance(scorer, str) else getattr(scorer, "__name__", "custom")
    return TransferTable(by, name, list(predictions), cols, acc_rows, n_rows)


def write_transfer(table: TransferTable, out_dir: str | Path, stem: str = "transfer") -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and the heatmap ``<stem>.png`` / ``<stem>.svg``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", asdict(table))
    rows = [[f"**{t}**", *(_fmt(a) for a in accs)] for t, accs in zip(table.train_groups, table.accuracy)]
    md = (
        f"# Transfer by {table.by} (scorer `{table.scorer}`)\n\nRows: trained on; columns: evaluated on. "
        "Accuracy %, invalid answers counted wrong.\n\n"
        + _md_table(["train \\ eval", *table.eval_groups], rows)
        + "\n"
    )
    atomic_write_text(out / f"{stem}.md", md)
    plt = _pyplot()
    data = np.array([[np.nan if a is None else 100 * a for a in r] for r in table.accuracy], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(table.eval_groups), 1.0 + 0.7 * len(table.train_groups)))
    im = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", vmin=0, vmax=100)
    ax.set_xticks(range(len(table.eval_groups)), table.eval_groups, rotation=45, ha="right")
    ax.set_yticks(range(len(table.train_groups)), table.train_groups)
    ax.set_xlabel(f"evaluated on ({table.by})")
    ax.set_ylabel(f"trained on ({table.by})")
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if not np.isnan(data[i, j]):
                ax.text(
                    j,
                    i,
                    f"{data[i, j]:.0f}",
                    ha="center",
                    va="center",
                    color="white" if data[i, j] < 60 else "black",
                    fontsize=8,
                )
    fig.colorbar(im, ax=ax, label=f"accuracy % ({table.scorer})")
    ax.set_title(f"Cross-{table.by.replace('_', '-')} transfer")
    return [out / f"{stem}.json", out / f"{stem}.md", *_save_figure(fig, out, stem)]


# ------------------------------------------------------------------------------- transitions


@dataclass
class TransitionTable:
    """Counts of correctness transitions between two prediction sets, per group and overall."""

    by: str
    scorer: str
    before: str
    after: str
    groups: dict[str, dict[str, int]] = field(default_factory=dict)
    overall: dict[str, int] = field(default_factory=dict)
    unmatched: int = 0


def error_transitions(
    before: Sequence[Prediction],
    after: Sequence[Prediction],
    by: str = "modality",
    scorer: str | Callable[..., Any] = "medgr2",
    names: tuple[str, str] = ("before", "after"),
) -> TransitionTable:
    """Count c->c, w->c, c->w, w->w per group between two prediction sets, matched by ``question_id``.

    Questions present in only one set are counted in ``unmatched`` and left out.
    """
    ok_b = dict(zip((p.question_id for p in before), correctness(before, scorer)))
    ok_a = correctness(after, scorer)
    name = scorer if isinstance(scorer, str) else getattr(scorer, "__name__", "custom")
    table = TransitionTable(by, name, *names, overall=dict.fromkeys(TRANSITIONS, 0))
    matched = 0
    for p, a in zip(after, ok_a):
        if p.question_id not in ok_b:
            continue
        matched += 1
        kind = f"{'c' if ok_b[p.question_id] else 'w'}->{'c' if a else 'w'}"
        group = table.groups.setdefault(str(getattr(p, by)), dict.fromkeys(TRANSITIONS, 0))
        group[kind] += 1
        table.overall[kind] += 1
    if not matched:
        raise ValueError(
            "the two prediction files share no question_id: compare predictions of the same questions"
        )
    table.unmatched = len(ok_b) + len(after) - 2 * matched
    table.groups = dict(sorted(table.groups.items()))
    return table


def write_transitions(table: TransitionTable, out_dir: str | Path, stem: str = "transitions") -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and stacked bars ``<stem>.png`` / ``<stem>.svg``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", asdict(table))
    groups = {**table.groups, "all": table.overall}
    rows = []
    for g, c in groups.items():
        n = sum(c.values())
        net = (c["w->c"] - c["c->w"]) / n if n else 0.0
        rows.append([g, n, *(c[k] for k in TRANSITIONS), f"{100 * net:+.1f}"])
    md = (
        f"# Error transitions {table.before} → {table.after} by {table.by} (scorer `{table.scorer}`)\n\n"
        + _md_table([table.by, "n", *TRANSITIONS, "net gain (pp)"], rows)
        + (
            f"\n\n{table.unmatched} question(s) present in only one file were left out.\n"
            if table.unmatched
            else "\n"
        )
    )
    atomic_write_text(out / f"{stem}.md", md)
    plt = _pyplot()
    names = list(groups)
    fig, ax = plt.subplots(figsize=(1.5 + 0.8 * len(names), 4))
    bottom = np.zeros(len(names))
    colors = {"c->c": "#4c9a2a", "w->c": "#a4de02", "c->w": "#e4572e", "w->w": "#8d8d8d"}
    for kind in TRANSITIONS:
        share = np.array([100 * groups[g][kind] / max(1, sum(groups[g].values())) for g in names])
        ax.bar(names, share, bottom=bottom, label=kind, color=colors[kind])
        bottom += share
    ax.set_ylabel("% of questions")
    ax.set_title(f"{table.before} → {table.after} ({table.scorer})")
    ax.tick_params(axis="x", rotation=45)
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
    return [out / f"{stem}.json", out / f"{stem}.md", *_save_figure(fig, out, stem)]


# -------------------------------------------------------------------------------- efficiency


@dataclass
class EfficiencyPoint:
    """Accuracy of one method at one training-set size, over seeds."""

    method: str
    size: int
    n_seeds: int
    mean: float
    sd: float
    min: float
    max: float


def efficiency_curves(results: Sequence[Mapping[str, Any]]) -> list[EfficiencyPoint]:
    """Aggregate ``{method, size, seed, accuracy}`` rows into mean/sd/min/max per (method, size).

    A method with rows at a single size (e.g. ``full``, the large unfiltered baseline) becomes a
    single point, drawn as a horizontal reference line.
    """
    cells: dict[tuple[str, int], list[float]] = {}
    for i, r in enumerate(results):
        missing = [k for k in ("method", "size", "accuracy") if k not in r]
        if missing:
            raise ValueError(
                f"result row {i} lacks {', '.join(missing)}: rows need method, size, seed, accuracy"
            )
        cells.setdefault((str(r["method"]), int(r["size"])), []).append(float(r["accuracy"]))
    if not cells:
        raise ValueError("no results: give rows {method, size, seed, accuracy}")
    out = []
    for (method, size), accs in sorted(cells.items()):
        a = np.asarray(accs)
        out.append(
            EfficiencyPoint(
                method,
                size,
                len(a),
                round(float(a.mean()), 6),
                round(float(a.std(ddof=1)) if len(a) > 1 else 0.0, 6),
                round(float(a.min()), 6),
                round(float(a.max()), 6),
            )
        )
    return out


def write_efficiency(
    points: Sequence[EfficiencyPoint],
    out_dir: str | Path,
    stem: str = "efficiency",
    title: str = "Data efficiency",
) -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and the curves ``<stem>.png`` / ``<stem>.svg``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", [asdict(p) for p in points])
    rows = [
        [p.method, p.size, p.n_seeds, _fmt(p.mean), _fmt(p.sd), f"{_fmt(p.min)}–{_fmt(p.max)}"]
        for p in points
    ]
    atomic_write_text(
        out / f"{stem}.md",
        f"# {title}\n\nAccuracy % over seeds.\n\n"
        + _md_table(["method", "size", "seeds", "mean", "sd", "range"], rows)
        + "\n",
    )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    methods: dict[str, list[EfficiencyPoint]] = {}
    for p in points:
        methods.setdefault(p.method, []).append(p)
    curves = {m: sorted(pts, key=lambda p: p.size) for m, pts in methods.items() if len(pts) > 1}
    baselines = [pts[0] for pts in methods.values() if len(pts) == 1]
    for method, pts in curves.items():
        x = [p.size for p in pts]
        bars = ax.errorbar(
            x,
            [100 * p.mean for p in pts],
            yerr=[100 * p.sd for p in pts],
            marker="o",
            capsize=3,
            label=f"{method} (mean ± sd)",
        )
        ax.fill_between(
            x,
            [100 * p.min for p in pts],
            [100 * p.max for p in pts],
            alpha=0.15,
            color=bars.lines[0].get_color(),
        )
    for k, p in enumerate(baselines):  # a method at one size (the unfiltered set): a reference line
        color = ("black", "dimgray", "gray")[k % 3]
        ax.axhline(100 * p.mean, linestyle="--", color=color, label=f"{p.method} (n={p.size})")
        ax.axhspan(100 * p.min, 100 * p.max, color=color, alpha=0.08)
    sizes = sorted({p.size for pts in curves.values() for p in pts})
    ax.set_xscale("log")
    if sizes:
        ax.set_xticks(sizes, [str(x) for x in sizes])
        ax.minorticks_off()
    ax.set_xlabel("training samples")
    ax.set_ylabel("accuracy % (band: min–max over seeds)")
    ax.set_title(title)
    ax.legend()
    return [out / f"{stem}.json", out / f"{stem}.md", *_save_figure(fig, out, stem)]
