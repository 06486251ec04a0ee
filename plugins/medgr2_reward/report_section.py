"""The reward plugin's section of the run report: R_φ calibration after reward-init and each reward-update."""

from __future__ import annotations

import base64
from collections import defaultdict
from pathlib import Path
from typing import Any

from medgr2.artifacts import CALIBRATION, RESULT
from medgr2.interfaces import ReportSection
from medgr2.report import escape, svg, table
from medgr2.store import read_json, read_jsonl

GRADE_NAMES = {1: "1 original (10)", 2: "2 synonyms (6)", 3: "3 deletions (0)", 4: "4 irrelevant (−6)", 0: "labelled"}


def _calibration(stage_dir: Path, title: str) -> str:
    result = stage_dir / RESULT
    if not result.exists():
        return ""
    ckpt = Path(read_json(result).get("checkpoint", ""))
    parts = [f"<h3>{escape(title)}</h3>"]
    for cand in (ckpt / CALIBRATION, stage_dir / CALIBRATION):
        if cand.exists():
            cal = read_json(cand)
            flat = [[k, v] for k, v in cal.items() if isinstance(v, (int, float, str))]
            parts.append(table(["metric", "value"], flat))
            per = cal.get("per_grade") or cal.get("by_grade") or {}
            if isinstance(per, dict) and per:
                parts.append(table(["grade", "n", "mean", "std"], [
                    [k, v.get("n"), v.get("mean"), v.get("std")] for k, v in per.items() if isinstance(v, dict)]))
            break
    for png in (ckpt / "calibration.png", stage_dir / "calibration.png"):
        if png.exists():
            parts.append(f'<img alt="calibration plot" style="max-width:460px" '
                         f'src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">')
            break
    origins = sorted(p for p in (ckpt / "by-origin").glob(f"*/{CALIBRATION}")) if ckpt.name else []
    if origins:
        parts.append("<p>Held-out calibration of each part of the training set (graded reports, judge scores):</p>")
        parts.append(table(["part", "spearman", "mse", "pairwise accuracy", "n"], [
            [p.parent.name, c.get("spearman"), c.get("mse"), c.get("pairwise_accuracy"), c.get("n")]
            for p in origins for c in [read_json(p)]]))
    scores = _grade_scores(stage_dir, ckpt)
    if scores:
        parts.append(svg.histogram(scores, title="R_φ on held-out graded examples, by grade"))
    return "".join(parts)


def _grade_scores(stage_dir: Path, ckpt: Path) -> dict[str, list[float]]:
    """Held-out scores by grade when the RM stage wrote them (``heldout_scores.jsonl``)."""
    for path in (ckpt / "heldout_scores.jsonl", stage_dir / "heldout_scores.jsonl"):
        rows = read_jsonl(path)
        if rows:
            out: dict[str, list[float]] = defaultdict(list)
            for r in rows:
                out[GRADE_NAMES.get(int(r.get("grade", 0)), str(r.get("grade")))].append(float(r["score"]))
            return dict(sorted(out.items()))
    return {}


class CalibrationSection:
    """``reward-calibration``: R_φ v0's held-out calibration, then each cycle's retrained R_φ and its gate."""

    def __init__(self, options: Any = None):
        self.options = options

    def render(self, run_dir: Path) -> ReportSection | None:
        parts = [_calibration(run_dir / "cycle-000" / "reward-init", "R_φ v0 (initial grade set)")]
        for cycle_dir in sorted(run_dir.glob("cycle-[0-9][0-9][0-9]")):
            if cycle_dir.name == "cycle-000":
                continue
            stage = cycle_dir / "reward-update"
            gate = stage / "gate.json"
            if gate.exists():
                g = read_json(gate)
                verdict = "promoted" if g.get("promoted") else "kept the current R_φ"
                parts.append(f"<h3>R_φ after {escape(cycle_dir.name)}</h3><p>gate: {escape(verdict)} "
                             f"({escape(g.get('reason', ''))}); labelled {g.get('labelled')}, replay {g.get('replay')}</p>")
            parts.append(_calibration(stage, f"calibration of the retrained R_φ ({cycle_dir.name})"))
        html = "".join(parts)
        return ReportSection(title="Reward model", html=html, order=10) if html else None
