"""The GPU check's CPU fallback runs end to end (tiny configs), so the script cannot rot without a GPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def run_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, str(SCRIPT), "--cpu-tiny", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=env)


def table_rows(stdout: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| check")]
    assert rows, f"no table in the output:\n{stdout}"
    return rows


def test_cpu_fallback_prints_every_row_with_figures():
    proc = run_check()
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert "GPU check on CPU (tiny configs)" in proc.stdout
    rows = table_rows(proc.stdout)
    by_check: dict[str, list[list[str]]] = {}
    for row in rows:
        assert len(row) == 7, row
        by_check.setdefault(row[0], []).append(row)
    assert set(by_check) == {"SFT step", "GRPO generate", "GRPO loss step", "vLLM rollouts", "R_phi scoring",
                             "loop overhead"}, sorted(by_check)

    (sft,) = by_check["SFT step"]
    assert sft[6] == "ok" and "4x4 accum" in sft[2] and re.fullmatch(r"\d+\.\d+ s/step", sft[3]), sft
    assert re.fullmatch(r"RSS \d+ MB", sft[4]) and sft[5].endswith("tok/s"), sft
    (gen,) = by_check["GRPO generate"]
    assert gen[6] == "ok" and "G=8" in gen[2] and re.fullmatch(r"\d+\.\d+ s", gen[3]), gen
    (loss,) = by_check["GRPO loss step"]
    assert loss[6] == "ok" and "beta=0.04" in loss[2] and re.fullmatch(r"\d+\.\d+ s/step", loss[3]), loss

    (vllm,) = by_check["vLLM rollouts"]
    try:
        import vllm  # noqa: F401

        assert vllm[6] == "skipped" and "CUDA" in vllm[5], vllm
    except ImportError:
        assert vllm[6] == "not installed" and "not importable" in vllm[5], vllm

    fp32, bf16 = by_check["R_phi scoring"]
    assert "float32" in fp32[2] and "bf16" in bf16[2]
    for row in (fp32, bf16):
        rates = re.fullmatch(r"(\d[\d.]*)/s vs (\d[\d.]*)/s", row[3])
        assert row[6] == "ok" and rates, row
        up, _ = re.fullmatch(r"speed-up (\d+\.\d+)x, max diff (\S+)", row[5]).groups()
        assert abs(float(up) / (float(rates[2]) / float(rates[1])) - 1) < 0.01, row  # 4 significant digits
    # the scorer's production arithmetic (float32) is batch invariant; bf16 is reported, not required
    assert float(re.search(r"max diff (\S+)", fp32[5])[1]) <= 1e-5, fp32

    trl, *scaled = by_check["loop overhead"]
    assert trl[6] == "ok" and re.fullmatch(r"\d+\.\d+ vs \d+\.\d+ s/step", trl[3]), trl
    assert re.fullmatch(r"overhead [+-]\d+\.\d % \(goal <= 5 %\)", trl[5]), trl
    assert [r[1] for r in scaled] == ["tiny"] and scaled[0][5].endswith("% of the step"), scaled


def test_unknown_size_is_a_clear_error():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "3b,13b"], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "unknown size(s) ['13b'] in --sizes: give 3b, 7b" in proc.stderr, proc.stderr
