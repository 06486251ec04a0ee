"""The offline quickstart (what `make demo` runs), reduced for CI; and the shipped configs validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

REDUCED = [
    "reward.model.options.max_steps=20",
    "reward.model.options.max_train_examples=160",
    "policy.sft.options.max_steps=60",
    "policy.grpo.options.max_steps=2",
    "evaluation.max_samples=60",
]
"""The quickstart's defaults with shorter training (the full run's figures are in docs/quickstart.md)."""


@pytest.mark.slow
def test_reduced_quickstart_runs_end_to_end(tmp_path):
    import medgr2
    from medgr2.data import SeedItem, VQASample
    from medgr2.store import read_json, read_jsonl

    result = medgr2.run(None, overrides=[f"runs_dir={tmp_path}", *REDUCED])
    run_dir = result.run_dir
    assert result.report is not None and result.report.exists()
    for stage in ("generate", "score", "filter", "evaluate", "reward-update"):
        assert (run_dir / "cycle-001" / stage).is_dir(), stage
    # the embedded real corpus is the bulk of the data, split by subject
    items = read_jsonl(run_dir / "cycle-000" / "seed" / "items.jsonl", SeedItem)
    datasets = {it.dataset for it in items}
    assert {"PneumoniaMNIST", "TotalSegmentator"} <= datasets
    ledger = read_json(run_dir / "ledger.json")
    assert ledger[0]["cycle"] == 1 and ledger[0]["generated"] > 300
    # the imperfect generator: about 40 % of its samples carry a recorded defect
    defects = ledger[0]["generation"]["extra"]["defects"]
    assert 0.3 < 1 - defects["none"] / sum(defects.values()) < 0.5
    scored = read_jsonl(run_dir / "cycle-001" / "score" / "scored.jsonl", VQASample)
    assert scored and all(s.reward is not None and -6 <= s.reward.total <= 10 for s in scored)
    assert all(s.reward.model_version for s in scored)
    # stratified top-K keeps half of each (dataset, question type) stratum, then dedup drops a few
    mix = read_json(run_dir / "cycle-001" / "filter" / "mix-top_k.json")
    assert mix["stratify_by"] == ["dataset", "question_type"] and abs(mix["kept"] - len(scored) / 2) <= 10
    assert 0 < ledger[0]["kept"] <= mix["kept"]
    # zero-shot under the likelihood protocol: every answer a valid option, near chance; training helps
    eval_set = read_jsonl(run_dir / "cycle-000" / "eval-set" / "samples.jsonl", VQASample)
    chance = sum(1 / len(s.options) for s in eval_set) / len(eval_set)
    before, after = result.baseline.overall, result.cycles[0].evaluation.overall
    assert result.baseline.meta["mode"] == "likelihood" and before.invalid == 0 and before.n == 60
    assert abs(before.accuracy - chance) < 0.2
    assert after.accuracy > before.accuracy + 0.15, (before.accuracy, after.accuracy)
    # 20 R_φ steps instead of the quickstart's 450 leave R_φ v0 poorly calibrated: the run says so, and only that
    assert len(result.warnings) == 1 and result.warnings[0].startswith("R_φ v0 ranks"), result.warnings
    # SFT alone is evaluated too (GRPO follows), and generated answers beside the likelihood protocol
    sft = read_json(run_dir / "cycle-001" / "evaluate-sft" / "report.json")
    assert sft["overall"]["n"] == 60 and sft["meta"]["mode"] == "likelihood"
    assert result.cycles[0].ledger.sft_evaluation.accuracy == sft["overall"]["accuracy"]
    for stage in ("evaluate-baseline", "evaluate-sft", "evaluate"):
        also = read_json(run_dir / ("cycle-000" if stage == "evaluate-baseline" else "cycle-001") / stage
                         / "also-0" / "report.json")
        assert also["meta"]["mode"] == "generate" and also["overall"]["n"] == 60, stage
    # the report opens with the summary a newcomer reads: accuracy per stage, R_φ, defects before -> after
    html = result.report.read_text()
    assert "cycle-001" in html and "<svg" in html
    glance = html[html.index("At a glance"): html.index("<h2>Warnings")]
    for line in ("zero-shot (before training)", "cycle 1: after SFT", "cycle 1: after SFT + GRPO", "Chance",
                 "likelihood", "generate", "Spearman", "defective share"):
        assert line in glance, line
    assert html.index("At a glance") < html.index("<h2>Ledger")
    assert "Defects found by R_φ" in html


@pytest.mark.parametrize("name", ["paper.yaml", "shared-data-cpu.yaml"])
def test_shipped_configs_validate(name):
    path = REPO / "examples" / "configs" / name
    done = subprocess.run([sys.executable, "-m", "medgr2", "config", "validate", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout
