"""The offline quickstart (what `make demo` runs), reduced for CI; and the shipped configs validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

REDUCED = [
    "reward.model.options.max_steps=3",
    "policy.sft.options.max_steps=4",
    "policy.grpo.options.max_steps=2",
    "evaluation.max_samples=8",
]


@pytest.mark.slow
def test_reduced_quickstart_runs_end_to_end(tmp_path):
    import medgr2
    from medgr2.data import VQASample
    from medgr2.store import read_json, read_jsonl

    result = medgr2.run(None, overrides=[f"runs_dir={tmp_path}", *REDUCED])
    run_dir = result.run_dir
    assert result.report is not None and result.report.exists()
    for stage in ("generate", "score", "filter", "evaluate", "reward-update"):
        assert (run_dir / "cycle-001" / stage).is_dir(), stage
    ledger = read_json(run_dir / "ledger.json")
    assert ledger[0]["cycle"] == 1 and ledger[0]["generated"] > 0
    assert ledger[0]["evaluation"]["n"] > 0
    scored = read_jsonl(run_dir / "cycle-001" / "score" / "scored.jsonl", VQASample)
    assert scored and all(s.reward is not None and -6 <= s.reward.total <= 10 for s in scored)
    assert all(s.reward.model_version for s in scored)
    html = result.report.read_text()
    assert "cycle-001" in html and "<svg" in html


@pytest.mark.parametrize("name", ["paper.yaml", "shared-data-cpu.yaml"])
def test_shipped_configs_validate(name):
    path = REPO / "examples" / "configs" / name
    done = subprocess.run([sys.executable, "-m", "medgr2", "config", "validate", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout
