"""How well R_phi and a filter find the defects a generator made: per-defect AUROC and defect shares.

The ``labels`` generator's defect model records each sample's defect kind in
``provenance.raw["defect"]`` (``none`` for a clean sample; see ``medgr2_datasets.defects``).
R_phi and the filters never read it; this module does, afterwards, to measure them:

* :func:`defect_report` gives, per defect kind (and for ``any`` defect), the AUROC of the reward
  separating that kind from the clean samples (1.0: every clean sample scores above every
  defective one; 0.5: no better than chance), with an optional bootstrap 95 % interval, and the
  kind's share of the samples before and after a kept set (what the filter did to it);
* :func:`swap_images` gives each sample another image of the same modality, so that scoring the
  swapped set shows whether R_phi looks at the image at all (its AUROC should fall towards 0.5 on
  a defect only the image reveals, such as ``wrong_confusable``);
* :func:`format_defect_table` renders a report as a Markdown table.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from medgr2.data import DEFECT_CLEAN as CLEAN
from medgr2.data import DEFECT_KEY, VQASample, stable_hash

ANY = "any"


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a positive scores above a negative), ties counting one half (Mann-Whitney U / n+ n-).

    ``None`` when either side is empty.

    >>> auroc([3.0, 2.0], [1.0, 2.0])
    0.875
    """
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if not len(pos) or not len(neg):
        return None
    both = np.concatenate([pos, neg])
    order = np.argsort(both, kind="mergesort")
    sorted_scores = both[order]
    ranks = np.empty(len(both), dtype=np.float64)
    # average ranks (1-based) over runs of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(both)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def _bootstrap_auroc(pos: np.ndarray, neg: np.ndarray, b: int, rng: np.random.Generator
                     ) -> tuple[float, float] | None:
    if b <= 0 or not len(pos) or not len(neg):
        return None
    draws = [auroc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(b)]
    lo, hi = np.percentile(np.asarray(draws, dtype=np.float64), [2.5, 97.5])
    return round(float(lo), 4), round(float(hi), 4)


def defect_kind(sample: VQASample) -> str | None:
    """The defect kind recorded in ``sample``'s provenance (None: not recorded)."""
    return sample.provenance.raw.get(DEFECT_KEY)


def defect_report(
    samples: Sequence[VQASample],
    kept: Iterable[VQASample | str] | None = None,
    *,
    scores: Mapping[str, float] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Per defect kind: how R_phi's scores separate it from clean samples, and its share before/after.

    Args:
        samples: The generated samples, each with its defect kind in ``provenance.raw["defect"]``
            and (unless ``scores`` is given) its reward in ``sample.reward``.
        kept: The samples (or ids) a filter kept; None: no after-filter figures.
        scores: Sample id -> score, instead of ``sample.reward.total`` (e.g. R_phi's scores of
            the image-swapped set from :func:`swap_images`).
        bootstrap: Resamples of the 95 % AUROC interval (0: none).
        seed: Seed of the bootstrap.

    Returns:
        ``{"n", "n_kept", "clean", "kinds": {kind: {"n", "auroc", "auroc_ci95", "mean_score",
        "share_before", "kept", "share_after", "kept_rate"}}}`` with ``any`` for all defects
        together; ``share_after`` is the kind's share of the kept set, ``kept_rate`` the share of
        the kind that was kept.

    Raises:
        ValueError: a sample has no recorded defect kind or no score (naming the fix).
    """
    if not samples:
        raise ValueError("no samples to measure")
    by_kind: dict[str, list[int]] = defaultdict(list)
    values = np.empty(len(samples), dtype=np.float64)
    for i, s in enumerate(samples):
        kind = defect_kind(s)
        if kind is None:
            raise ValueError(
                f"sample {s.id!r} records no defect kind (provenance.raw[{DEFECT_KEY!r}]); generate with the "
                "labels generator and a defect rate above 0 (e.g. defects: {wrong_confusable: 0.2}), which "
                "records 'none' on clean samples")
        if scores is not None:
            if s.id not in scores:
                raise ValueError(f"sample {s.id!r} has no entry in scores; give a score for every sample")
            values[i] = float(scores[s.id])
        elif s.reward is None:
            raise ValueError(f"sample {s.id!r} has no reward; score the samples first (`medgr2 score`)")
        else:
            values[i] = float(s.reward.total)
        by_kind[kind].append(i)
    kept_ids = None if kept is None else {k if isinstance(k, str) else k.id for k in kept}
    is_kept = np.array([kept_ids is not None and s.id in kept_ids for s in samples])
    n, n_kept = len(samples), int(is_kept.sum())
    clean = np.asarray(by_kind.get(CLEAN, []), dtype=np.int64)
    groups = {k: np.asarray(v, dtype=np.int64) for k, v in sorted(by_kind.items()) if k != CLEAN}
    if groups:
        groups[ANY] = np.concatenate(list(groups.values()))
    rng = np.random.default_rng(seed)
    kinds: dict[str, Any] = {}
    for kind, idx in groups.items():
        a = auroc(values[clean], values[idx])  # clean is the positive class: higher reward = clean
        row: dict[str, Any] = {
            "n": len(idx),
            "auroc": None if a is None else round(a, 4),
            "auroc_ci95": _bootstrap_auroc(values[clean], values[idx], bootstrap, rng),
            "mean_score": round(float(values[idx].mean()), 4),
            "share_before": round(len(idx) / n, 4),
        }
        if kept_ids is not None:
            k = int(is_kept[idx].sum())
            row.update(kept=k, share_after=round(k / n_kept, 4) if n_kept else None,
                       kept_rate=round(k / len(idx), 4))
        kinds[kind] = row
    out: dict[str, Any] = {
        "n": n,
        "n_kept": n_kept if kept_ids is not None else None,
        "clean": {"n": len(clean),
                  "mean_score": round(float(values[clean].mean()), 4) if len(clean) else None,
                  **({"kept": int(is_kept[clean].sum())} if kept_ids is not None else {})},
        "kinds": kinds,
    }
    return out


def swap_images(samples: Sequence[VQASample], seed: int = 0) -> list[VQASample]:
    """Each sample with the image of another sample of the same modality (a seeded derangement over
    distinct images; a modality with a single distinct image keeps it). Text, answer, provenance and
    id stay, so the swapped set's scores line up with the original's by id."""
    images_by_modality: dict[str, list[Any]] = defaultdict(list)
    for s in samples:
        ref = s.images[0]
        if ref.key not in {r.key for r in images_by_modality[s.modality.value]}:
            images_by_modality[s.modality.value].append(ref)
    out = []
    for s in samples:
        pool = [r for r in images_by_modality[s.modality.value] if r.key != s.images[0].key]
        if not pool:
            out.append(s)
            continue
        pick = random.Random(stable_hash(seed, s.id)).choice(pool)
        out.append(s.model_copy(update={"images": (pick, *s.images[1:])}))
    return out


def format_defect_table(report: Mapping[str, Any]) -> str:
    """A Markdown table of :func:`defect_report`: one row per kind, ``any`` last."""
    after = report.get("n_kept") is not None
    head = "| defect | n | AUROC (clean vs defect) | share before |"
    head += " share after | kept |" if after else ""
    rule = "|---|---:|---:|---:|" + ("---:|---:|" if after else "")
    rows = [head, rule]
    kinds = report["kinds"]
    for kind in [k for k in kinds if k != ANY] + ([ANY] if ANY in kinds else []):
        r = kinds[kind]
        a = "n/a" if r["auroc"] is None else f"{r['auroc']:.3f}"
        if r.get("auroc_ci95"):
            a += f" [{r['auroc_ci95'][0]:.3f}, {r['auroc_ci95'][1]:.3f}]"
        line = f"| {kind} | {r['n']} | {a} | {100 * r['share_before']:.1f} % |"
        if after:
            sa = "n/a" if r["share_after"] is None else f"{100 * r['share_after']:.1f} %"
            line += f" {sa} | {r['kept']} of {r['n']} |"
        rows.append(line)
    return "\n".join(rows) + "\n"


class DefectsSection:
    """``defects``: per cycle, how well R_φ's scores separate each defect kind from clean samples (AUROC with
    its 95 % interval) and each kind's share before and after the filters. Nothing for runs whose generator
    records no defects."""

    def __init__(self, options: Any = None):
        self.options = options

    def render(self, run_dir: Any) -> Any:
        from pathlib import Path

        from medgr2 import artifacts
        from medgr2.interfaces import ReportSection
        from medgr2.report import escape, table
        from medgr2.store import read_jsonl

        parts = []
        for cycle_dir in sorted(Path(run_dir).glob("cycle-[0-9][0-9][0-9]")):
            scored_path, kept_path = cycle_dir / "score" / artifacts.SCORED, cycle_dir / "filter" / artifacts.KEPT
            if not scored_path.exists():
                continue
            scored = read_jsonl(scored_path, VQASample)
            if not scored or any(defect_kind(s) is None or s.reward is None for s in scored):
                continue
            kept = read_jsonl(kept_path, VQASample) if kept_path.exists() else None
            rep = defect_report(scored, kept, bootstrap=200)
            rows = []
            for kind, r in rep["kinds"].items():
                ci = f"[{r['auroc_ci95'][0]:.3f}, {r['auroc_ci95'][1]:.3f}]" if r.get("auroc_ci95") else None
                rows.append([kind, r["n"], r["auroc"], ci, r["share_before"], r.get("share_after"),
                             r.get("kept_rate")])
            parts.append(f"<h3>{escape(cycle_dir.name)}</h3>" + table(
                ["defect", "n", "AUROC", "95% CI", "share before", "share after", "share of the kind kept"], rows))
        if not parts:
            return None
        intro = ("<p class='muted'>AUROC: the chance that a clean sample scores above a defective one of this kind "
                 "(1 = R_φ always prefers the clean one, 0.5 = it cannot tell them apart, below 0.5 = it prefers "
                 "the defect). The defect kinds are recorded by the generator; R_φ and the filters never read "
                 "them.</p>")
        return ReportSection(title="Defects found by R_φ and the filters", html=intro + "".join(parts), order=40)
