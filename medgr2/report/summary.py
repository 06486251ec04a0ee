"""The run report's opening summary: what the run did and whether it worked, for a newcomer.

It reads only the run folder (the manifest's stage outputs, the cycle ledgers, the evaluation
reports and the scored / kept samples) and says, in order:

* **accuracy** on the held-out questions before training (zero-shot), after SFT and after SFT + GRPO,
  under each evaluation protocol the run used, with 95 % intervals and the chance level;
* **R_φ's calibration**: how well the reward model orders the held-out graded examples;
* **defects** (when the generator records them, as the ``labels`` defect model does): their share of
  the candidates before and after the filters.

Each figure comes with one sentence on what it means.
"""

from __future__ import annotations

from pathlib import Path

from medgr2 import artifacts as a
from medgr2.data import DEFECT_CLEAN, DEFECT_KEY, EvalReport, VQASample
from medgr2.report.markup import escape, table
from medgr2.store import read_json, read_jsonl

PROTOCOLS = {
    "likelihood": "likelihood: the option the policy finds most probable (OmniMedVQA's protocol; every answer is "
                  "a valid option, so an untrained policy scores near chance)",
    "generate": "generate: the policy writes its answer, which is matched to an option (an unreadable answer "
                "counts as wrong, so an untrained policy can score below chance)",
}


def eval_reports(stage_dir: Path) -> list[tuple[str, EvalReport]]:
    """``(protocol, report)`` of an evaluation stage: the main evaluator's, then each ``also-<i>`` beside it
    (the protocol is the report's ``mode``, else the folder's name)."""
    out = []
    for folder in [stage_dir, *sorted(stage_dir.glob(f"{a.ALSO_PREFIX}*"))]:
        path = folder / a.EVAL_REPORT
        if path.exists():
            report = read_json(path, EvalReport)
            out.append((str(report.meta.get("mode") or folder.name), report))
    return out


def _reports(stage_dir: Path) -> dict[str, EvalReport]:
    """Protocol → report (the first of each protocol)."""
    out: dict[str, EvalReport] = {}
    for label, report in eval_reports(stage_dir):
        out.setdefault(label, report)
    return out


def _cell(report: EvalReport | None) -> str:
    if report is None:
        return "–"
    o = report.overall
    ci = f" <span class='muted'>[{o.ci95[0]:.3f}, {o.ci95[1]:.3f}]</span>" if o.ci95 else ""
    return f"<b>{o.accuracy:.3f}</b>{ci}" + (f" <span class='muted'>({escape(o.invalid)} invalid)</span>"
                                              if o.invalid else "")


def chance_level(samples: list[VQASample]) -> float | None:
    """Mean of 1 / (number of options): what guessing scores on ``samples``."""
    with_options = [s for s in samples if s.options]
    return sum(1 / len(s.options) for s in with_options) / len(with_options) if with_options else None


def _accuracy(run_dir: Path) -> str:
    rows: list[tuple[str, dict[str, EvalReport]]] = [
        ("zero-shot (before training)", _reports(run_dir / "cycle-000" / "evaluate-baseline"))]
    cycles = sorted(p for p in run_dir.glob("cycle-[0-9][0-9][0-9]") if p.name != "cycle-000")
    for cycle_dir in cycles:
        n = int(cycle_dir.name.split("-")[1])
        sft = _reports(cycle_dir / "evaluate-sft")
        final = _reports(cycle_dir / "evaluate")
        grpo_ran = (cycle_dir / "grpo").is_dir() and any((cycle_dir / "grpo").iterdir())
        if sft:
            rows.append((f"cycle {n}: after SFT", sft))
        rows.append((f"cycle {n}: after SFT + GRPO" if grpo_ran else f"cycle {n}: after training", final))
    protocols = list(dict.fromkeys(p for _, reps in rows for p in reps))
    if not protocols:
        return ""
    head = "".join(f"<th>{escape(p)}</th>" for p in protocols)
    body = "".join(f"<tr><td>{escape(label)}</td>" + "".join(f"<td>{_cell(reps.get(p))}</td>" for p in protocols)
                   + "</tr>" for label, reps in rows)
    eval_set = run_dir / "cycle-000" / "eval-set" / a.SAMPLES
    chance = chance_level(read_jsonl(eval_set, VQASample)) if eval_set.exists() else None
    n_eval = next((r.overall.n for _, reps in rows for r in reps.values()), 0)
    notes = [(f"Accuracy on {n_eval} held-out questions (never trained on); in brackets the 95 % bootstrap "
              "interval: two figures whose intervals overlap may not differ.")]
    if chance is not None:
        notes.append(f"Chance (guessing among each question's options) is <b>{chance:.3f}</b>.")
    notes += [escape(PROTOCOLS[p]) + "." for p in protocols if p in PROTOCOLS]
    return (f"<h3>Accuracy: does training help?</h3><table><tr><th>policy</th>{head}</tr>{body}</table>"
            + "".join(f"<p class='muted'>{n}</p>" for n in notes))


def _calibration(run_dir: Path) -> str:
    record = read_json(run_dir / a.MANIFEST)["stages"].get("cycle-000/reward-init", {}) \
        if (run_dir / a.MANIFEST).exists() else {}
    out = record.get("outputs", {})
    if "calibration_heldout_spearman" not in out:
        return ""
    ordered = out.get("calibration_heldout_means_ordered")
    return ("<h3>R_φ: does the reward model rank answers correctly?</h3>"
            + table(["held-out graded examples", "Spearman", "pairwise ordering", "grade means ordered"],
                    [["R_φ v0", out.get("calibration_heldout_spearman"),
                      out.get("calibration_heldout_pairwise_accuracy"),
                      None if ordered is None else ("yes" if ordered else "no")]])
            + "<p class='muted'>R_φ scores answers from −6 (irrelevant) to 10 (the original). On graded examples it "
              "never trained on (original 10, synonyms 6, phrases deleted 0, an irrelevant or contradicting answer −6): Spearman "
              "is the rank agreement with those grades (1 = perfect, 0 = none); pairwise ordering the share of "
              "pairs from different grades in the right order (0.5 = chance).</p>")


def _defects(run_dir: Path) -> str:
    rows = []
    for cycle_dir in sorted(p for p in run_dir.glob("cycle-[0-9][0-9][0-9]") if p.name != "cycle-000"):
        scored_path, kept_path = cycle_dir / "score" / a.SCORED, cycle_dir / "filter" / a.KEPT
        if not (scored_path.exists() and kept_path.exists()):
            continue
        scored = read_jsonl(scored_path, VQASample)
        kinds = [s.provenance.raw.get(DEFECT_KEY) for s in scored]
        if not scored or any(k is None for k in kinds):
            continue
        kept = {s.id for s in read_jsonl(kept_path, VQASample)}
        bad = {s.id for s, k in zip(scored, kinds) if k != DEFECT_CLEAN}
        before = len(bad) / len(scored)
        after = len(bad & kept) / len(kept) if kept else None
        rows.append([cycle_dir.name, len(scored), before, len(kept), after,
                     None if after is None or not before else f"{(1 - after / before):.0%} fewer"])
    if not rows:
        return ""
    return ("<h3>Filtering: are the bad samples removed?</h3>"
            + table(["cycle", "candidates", "defective share", "kept", "defective share kept", "change"], rows)
            + "<p class='muted'>The generator recorded which of its samples it spoiled (a wrong answer, a rationale "
              "that argues for another option, an unanswerable question, a broken rationale or bad options). "
              "R_φ and the filters never see that record; it measures them here: the defective share should fall "
              "after filtering. Per-kind figures are in the defects section below.</p>")


def summary_html(run_dir: Path) -> str:
    """The opening "At a glance" section of the report (empty when the run has nothing to show yet)."""
    parts = [_accuracy(run_dir), _calibration(run_dir), _defects(run_dir)]
    body = "".join(p for p in parts if p)
    return f"<h2>At a glance</h2>{body}" if body else ""


__all__ = ["chance_level", "eval_reports", "summary_html"]
