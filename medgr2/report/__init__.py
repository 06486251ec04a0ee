"""The run report: one self-contained HTML file (inline SVG charts, base64 thumbnails), viewable offline.

``write_report(run_dir)`` reads only the run directory's artifacts, so it can be rebuilt at any time
(``medgr2 report RUN_DIR``). Sections: "At a glance" (:mod:`medgr2.report.summary`: accuracy before and
after each training stage, R_φ's calibration, defects before and after filtering, each explained);
the ledger; warnings (what degenerated, or "none"); the sections plugins contribute (kind
``report_section``: R_φ calibration comes from the reward plugin); per cycle the funnel, the mix
before and after each selection filter, reward histograms by modality, galleries of accepted and
rejected samples, training curves and evaluation tables; the config.
"""

from __future__ import annotations

import base64
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from medgr2 import artifacts
from medgr2.artifacts import CYCLE_LEDGER, POLICY_DIR, TRAIN_RESULT
from medgr2.data import CycleLedger, EvalReport, FilterDecision, VQASample
from medgr2.report import svg
from medgr2.report.markup import escape, table
from medgr2.report.summary import eval_reports, summary_html
from medgr2.store import atomic_write_text, read_json, read_jsonl

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{margin-bottom:0} .sub{color:#666;margin-top:4px} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:12px} .gallery{display:flex;flex-wrap:wrap;gap:8px}
.card{border:1px solid #ddd;border-radius:6px;padding:6px;width:240px;font-size:12px;background:#fafafa}
.card img{width:96px;height:96px;object-fit:cover;float:left;margin-right:6px;image-rendering:pixelated}
.card .q{font-weight:600} .card .ok{color:#2a7} .card .no{color:#c33} .card ol{margin:2px 0;padding-left:18px;clear:both}
pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px;max-height:400px} .muted{color:#888}
"""


def _thumb(sample: VQASample, registry: Any, size: int = 96) -> str:
    try:
        from medgr2.images import open_image

        img = open_image(sample.images[0], registry).convert("RGB")
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception:  # noqa: BLE001 - a missing image must not break the report
        return ""


def _card(s: VQASample, registry: Any, reason: str = "") -> str:
    src = _thumb(s, registry)
    img = f'<img src="{src}" alt="{escape(s.modality.value)} image">' if src else '<div class="muted">no image</div>'
    opts = "".join(f'<li class="{"ok" if o == s.answer else ""}">{escape(o)}</li>' for o in s.options)
    score = f"r = {s.reward.total:.2f}" if s.reward else "unscored"
    why = f'<div class="no">{escape(reason)}</div>' if reason else ""
    return (f'<div class="card">{img}<div class="q">{escape(s.question)}</div><div class="muted">{escape(s.modality.value)} · '
            f'{escape(s.question_type.label)} · {score}</div><ol type="A">{opts}</ol>{why}</div>')


def _eval_section(report: EvalReport, title: str) -> str:
    parts = [f"<h3>{escape(title)} — scorer <code>{escape(report.scorer)}</code></h3>"]
    o = report.overall
    parts.append(table(["", "n", "accuracy", "95% CI", "valid-only acc.", "invalid", "macro F1", "bal. acc.", "AUROC"],
                        [["overall", o.n, o.accuracy, _ci(o.ci95), o.accuracy_valid_only, o.invalid, o.macro_f1,
                          o.balanced_accuracy, o.auroc]]))
    for label, groups in (("modality", report.by_modality), ("question type", report.by_question_type),
                          ("dataset", report.by_dataset)):
        if groups:
            parts.append(table([label, "n", "accuracy", "95% CI", "invalid", "macro F1"],
                                [[k, g.n, g.accuracy, _ci(g.ci95), g.invalid, g.macro_f1]
                                 for k, g in sorted(groups.items())]))
    return "".join(parts)


def _eval_sections(stage_dir: Path, title: str) -> str:
    """The main evaluator's report of an evaluation stage, then each ``evaluation.also`` report beside it."""
    return "".join(_eval_section(report, f"{title} ({mode})") for mode, report in eval_reports(stage_dir))


def _ci(ci: Any) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "–"


def _history_curves(result_path: Path, title: str) -> str:
    if not result_path.exists():
        return ""
    hist = read_json(result_path).get("history") or []
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for i, row in enumerate(hist):
        step = float(row.get("step", i))
        for k, v in row.items():
            if k in ("step", "epoch") or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if "loss" in k or "reward" in k or "corr" in k or "tie" in k:
                series[k].append((step, float(v)))
    if not series:
        return ""
    return svg.line_chart(dict(sorted(series.items())[:9]), title=title)


def _funnel(cycle_dir: Path) -> str:
    path = cycle_dir / "filter" / artifacts.FUNNEL
    gen_ledger = cycle_dir / "generate" / artifacts.GENERATION_LEDGER
    stages: list[tuple[str, int]] = []
    if gen_ledger.exists():
        led = read_json(gen_ledger)
        stages.append(("generated", int(led.get("successes", 0)) + sum(led.get("rejects", {}).values())))
        stages.append(("valid", int(led.get("successes", 0))))
    rows = []
    if path.exists():
        f = read_json(path)
        steps = f.get("steps", f) if isinstance(f, dict) else f
        for st in steps if isinstance(steps, list) else []:
            stages.append((f"after {st.get('step', st.get('name', '?'))}", int(st.get("kept", 0))))
            rows.append([st.get("step", st.get("name", "?")), st.get("in"), st.get("kept"),
                         ", ".join(f"{k}: {v}" for k, v in (st.get("dropped_by_reason") or {}).items())])
    out = svg.funnel(stages, title="funnel") if stages else ""
    if rows:
        out += table(["step", "in", "kept", "dropped by reason"], rows)
    return out


def _share(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.1f} %)" if total else str(n)


def _mix(cycle_dir: Path, answers: int = 10) -> str:
    """The mix before and after each selection filter (its ``mix-<filter>.json``): counts and shares per
    modality, question type and dataset, and the ``answers`` answers whose share moved most (a filter
    that trusts common diagnoses more than rare ones shows here)."""
    parts = []
    for path in sorted((cycle_dir / "filter").glob("mix-*.json")):
        facts = read_json(path)
        n_in, n_kept = int(facts.get("in") or 0), int(facts.get("kept") or 0)
        rows: list[list[Any]] = []
        for field, counts in (facts.get("by") or {}).items():
            before, after = counts.get("before") or {}, counts.get("after") or {}
            values = list(before)
            if field == "answer" and len(values) > answers:
                moved = {v: abs(after.get(v, 0) / max(n_kept, 1) - before[v] / max(n_in, 1)) for v in values}
                values = sorted(values, key=lambda v: -moved[v])[:answers]
                field = f"answer ({answers} of {len(before)} that moved most)"
            rows += [[field, v, _share(before[v], n_in), _share(after.get(v, 0), n_kept)] for v in values]
        strata = ", ".join(facts.get("stratify_by") or []) or "nothing"
        parts.append(f"<h4>{escape(facts.get('filter', path.stem))}: {n_in} → {n_kept}, stratified by "
                     f"{escape(strata)}</h4>" + table(["field", "value", "before", "after"], rows))
    return "<h3>Mix before and after selection</h3>" + "".join(parts) if parts else ""


def _galleries(cycle_dir: Path, registry: Any, n: int = 8) -> str:
    scored = read_jsonl(cycle_dir / "score" / artifacts.SCORED, VQASample)
    if not scored:
        return ""
    decisions = read_jsonl(cycle_dir / "filter" / artifacts.DECISIONS, FilterDecision)
    dropped: dict[str, str] = {}
    for d in decisions:
        if not d.keep and d.sample_id not in dropped:
            dropped[d.sample_id] = f"{d.filter}: {d.reason}"
    kept_ids = {s.id for s in read_jsonl(cycle_dir / "filter" / artifacts.KEPT, VQASample)}
    accepted = sorted((s for s in scored if s.id in kept_ids), key=lambda s: -(s.reward.total if s.reward else 0))[:n]
    rejected = sorted((s for s in scored if s.id not in kept_ids), key=lambda s: s.reward.total if s.reward else 0)[:n]
    by_mod: dict[str, list[float]] = defaultdict(list)
    for s in scored:
        if s.reward:
            by_mod[s.modality.value].append(s.reward.total)
    parts = [f'<div class="charts">{svg.histogram(by_mod, title="R_φ of candidates by modality")}</div>']
    parts.append(f"<h4>Accepted ({len(kept_ids)})</h4><div class='gallery'>"
                 + "".join(_card(s, registry) for s in accepted) + "</div>")
    parts.append(f"<h4>Rejected ({len(scored) - len(kept_ids)})</h4><div class='gallery'>"
                 + "".join(_card(s, registry, dropped.get(s.id, "")) for s in rejected) + "</div>")
    return "".join(parts)


def _warnings(run_dir: Path, sections: list[Any]) -> str:
    """What degenerated: the loop's warnings and the sections' own; "none" when nothing did."""
    path = run_dir / "warnings.json"
    warnings = list(read_json(path)) if path.exists() else []
    warnings += [w for sec in sections for w in sec.warnings]
    if not warnings:
        return "<h2>Warnings</h2><p class='muted'>None: every stage did its work and no guard fired.</p>"
    return "<h2>Warnings</h2><ul>" + "".join(f"<li>{escape(w)}</li>" for w in warnings) + "</ul>"


def _plugin_sections(run_dir: Path, registry: Any) -> list[Any]:
    """Every registered report section that has something to show for this run, in order."""
    if registry is None:
        return []
    out = []
    for name in registry.names("report_section"):
        section = registry.create("report_section", name).render(run_dir)
        if section is not None:
            out.append(section)
    return sorted(out, key=lambda sec: sec.order)


def build_html(run_dir: Path, registry: Any = None) -> str:
    """The report of ``run_dir`` as one HTML string."""
    run_dir = Path(run_dir)
    cfg = (run_dir / "config.yaml").read_text(encoding="utf-8") if (run_dir / "config.yaml").exists() else ""
    versions = read_json(run_dir / "versions.json") if (run_dir / "versions.json").exists() else {}
    ledger_path = run_dir / CYCLE_LEDGER
    ledgers = [CycleLedger.model_validate(c) for c in read_json(ledger_path)] if ledger_path.exists() else []
    body = [f"<h1>MedGR2 run <code>{escape(run_dir.name)}</code></h1>",
            f'<p class="sub">medgr2 {escape(versions.get("medgr2", "?"))} · {len(ledgers)} cycle(s)</p>']

    if ledgers:
        body.append("<h2>Ledger</h2>")
        body.append(table(
            ["cycle", "generated", "valid", "kept", "requests", "tokens in/out", "cost $", "SFT steps", "GRPO steps",
             "SFT s", "GRPO s", "RM version", "RM promoted", "accuracy"],
            [[c.cycle, c.generated, c.valid, c.kept, c.requests,
              f"{c.generation.input_tokens}/{c.generation.output_tokens}" if c.generation else "–", c.cost_usd,
              c.optimizer_steps.get("sft"), c.optimizer_steps.get("grpo"), c.train_s.get("sft"), c.train_s.get("grpo"),
              Path(c.rm_version).name, c.rm_promoted, c.evaluation.accuracy if c.evaluation else None]
             for c in ledgers]))

    sections = _plugin_sections(run_dir, registry)
    body[2:2] = [summary_html(run_dir), _warnings(run_dir, sections)]
    base = run_dir / "cycle-000" / "evaluate-baseline" / artifacts.EVAL_REPORT
    for sec in sections:
        body.append(f"<h2>{escape(sec.title)}</h2>{sec.html}")

    if base.exists():
        body.append("<h2>Evaluation before training</h2>")
        body.append(_eval_sections(base.parent, "zero-shot policy"))

    for cycle_dir in sorted(run_dir.glob("cycle-[0-9][0-9][0-9]")):
        if cycle_dir.name == "cycle-000":
            continue
        body.append(f"<h2>{escape(cycle_dir.name)}</h2><h3>Funnel</h3>{_funnel(cycle_dir)}{_mix(cycle_dir)}")
        body.append(_galleries(cycle_dir, registry))
        curves = [_history_curves(cycle_dir / s / POLICY_DIR / TRAIN_RESULT, f"{s.upper()} curves")
                  for s in ("sft", "grpo")]
        if any(curves):
            body.append("<h3>Training</h3><div class='charts'>" + "".join(curves) + "</div>")
        body.append(_eval_sections(cycle_dir / "evaluate-sft", "Evaluation after SFT"))
        body.append(_eval_sections(cycle_dir / "evaluate", "Evaluation"))

    body.append(f"<h2>Config</h2><pre>{escape(cfg)}</pre>")
    body.append(f"<h2>Versions</h2><pre>{escape(json.dumps(versions, indent=2))}</pre>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>MedGR2 run {escape(run_dir.name)}"
            f"</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>")


def write_report(run_dir: str | Path, registry: Any = None, out: str | Path | None = None) -> Path:
    """Write ``report.html`` into ``run_dir`` (or ``out``) and return its path."""
    run_dir = Path(run_dir)
    path = Path(out) if out else run_dir / "report.html"
    atomic_write_text(path, build_html(run_dir, registry))
    return path


__all__ = ["build_html", "escape", "svg", "table", "write_report"]
