"""Evaluation report files: ``report.json`` and ``report.md`` (per-group Markdown tables)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medgr2 import artifacts
from medgr2.data import EvalReport, GroupMetrics
from medgr2.store import atomic_write_text, write_json

COLUMNS = ("n", "accuracy", "95% CI", "valid-only acc.", "invalid", "macro F1", "balanced acc.", "AUROC")


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _row(name: str, m: GroupMetrics) -> str:
    ci = "—" if m.ci95 is None else f"{100 * m.ci95[0]:.1f}–{100 * m.ci95[1]:.1f}"
    cells = (
        name,
        str(m.n),
        _pct(m.accuracy),
        ci,
        _pct(m.accuracy_valid_only),
        f"{m.invalid} ({100 * m.invalid / max(m.n, 1):.1f}%)",
        _pct(m.macro_f1),
        _pct(m.balanced_accuracy),
        _pct(m.auroc),
    )
    return "| " + " | ".join(cells) + " |"


def group_table(title: str, groups: Mapping[str, GroupMetrics]) -> str:
    """A Markdown table of per-group metrics (percentages)."""
    head = f"| {title} | " + " | ".join(COLUMNS) + " |"
    sep = "|" + "---|" * (len(COLUMNS) + 1)
    return "\n".join([head, sep, *(_row(k, v) for k, v in sorted(groups.items()))])


def report_markdown(report: EvalReport) -> str:
    """The whole report as Markdown: overall, then one table per breakdown that exists."""
    lines = [f"# Evaluation report — scorer `{report.scorer}`", ""]
    if report.model:
        lines += [f"Model: `{report.model}`", ""]
    lines += [
        (
            "Accuracy counts invalid answers (naming no option under the scorer) as wrong; "
            "valid-only accuracy skips them. CIs: 95 % bootstrap. Percentages."
        ),
        "",
        group_table("group", {"all": report.overall}),
        "",
    ]
    for title, groups in (
        ("modality", report.by_modality),
        ("question type", report.by_question_type),
        ("dataset", report.by_dataset),
    ):
        if groups:
            lines += [f"## By {title}", "", group_table(title, groups), ""]
    if report.overall.auroc is None:
        lines += ["AUROC: not reported (no option scores in the predictions).", ""]
    return "\n".join(lines)


def write_report(report: EvalReport, output_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json`` and ``report.md`` into ``output_dir``; returns their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / artifacts.EVAL_REPORT, "md": out / "report.md"}
    write_json(paths["json"], report)
    atomic_write_text(paths["md"], report_markdown(report))
    return paths


def summary_json(report: EvalReport) -> dict[str, Any]:
    """The flat JSON summary printed by ``medgr2 eval score --json``: top-level ``accuracy`` (all n,
    invalid counted wrong), ``accuracy_valid_only``, ``n``, ``invalid``, plus every group."""
    o = report.overall
    return {
        "scorer": report.scorer,
        "n": o.n,
        "correct": o.correct,
        "invalid": o.invalid,
        "invalid_rate": round(o.invalid / max(o.n, 1), 6),
        "accuracy": o.accuracy,
        "accuracy_valid_only": o.accuracy_valid_only,
        "ci95": o.ci95,
        "macro_f1": o.macro_f1,
        "balanced_accuracy": o.balanced_accuracy,
        "auroc": o.auroc,
        "by_modality": {k: v.model_dump(mode="json") for k, v in report.by_modality.items()},
        "by_question_type": {k: v.model_dump(mode="json") for k, v in report.by_question_type.items()},
        "by_dataset": {k: v.model_dump(mode="json") for k, v in report.by_dataset.items()},
        "meta": report.meta,
    }
