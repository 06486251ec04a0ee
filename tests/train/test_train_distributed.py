"""Training as users run it: the CLI in subprocesses, kill-and-resume, two processes via accelerate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medgr2.store import write_jsonl

REPO = Path(__file__).resolve().parents[2]
CONFIG = "reward:\n  model: {name: fake}\n"  # the fake R_φ of medgr2.testing (loaded with --plugin)


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def files(tmp_path: Path, sample_factory) -> tuple[Path, Path]:
    """A samples JSONL (8 samples, PNGs beside it) and a run config using the fake R_φ."""
    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, sample_factory(tmp_path / "images", 8))
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG)
    return samples, config


def _cli(stage: str, config: Path, samples: Path, model: Path, out: Path, *sets: str) -> list[str]:
    args = ["-m", "medgr2", "--plugin", "medgr2.testing", stage, str(config), "--samples", str(samples),
            "--model", str(model), "--out", str(out), "--quiet"]
    for item in sets:
        args += ["--set", f"policy.{stage}.options.{item}"]
    return args


def _main(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in this process (saves the ~7 s import of a subprocess); restores the plugin set."""
    from medgr2 import plugins
    from medgr2.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        plugins.configure()
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_sft_then_grpo(tiny_qwen, tmp_path, capsys, files):
    samples, config = files
    code, out, err = _main(_cli("sft", config, samples, tiny_qwen, tmp_path / "sft", "max_steps=2",
                                "num_threads=1")[2:], capsys)
    assert code == 0, err[-3000:]
    checkpoint = json.loads(out)["checkpoint"]
    code, out, err = _main(_cli("grpo", config, samples, Path(checkpoint), tmp_path / "grpo", "max_steps=1",
                                "per_device_train_batch_size=4", "num_generations=4", "max_completion_length=6",
                                "num_threads=1")[2:],
                           capsys)
    assert code == 0, err[-3000:]
    assert json.loads(out)["metrics"]["global_step"] == 1
    assert (tmp_path / "grpo" / "final" / "model.safetensors").is_file()
    assert "rewards/reward_model/mean" in (tmp_path / "grpo" / "metrics.jsonl").read_text()


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys, files):
    samples, config = files
    code, _, err = _main(_cli("sft", config, samples, tmp_path / "nowhere", tmp_path / "o")[2:], capsys)
    assert code == 2 and "neither a local folder with config.json" in err
    code, _, err = _main(_cli("sft", config, tmp_path / "none.jsonl", tmp_path, tmp_path / "o")[2:], capsys)
    assert code == 2 and "does not exist" in err


def test_kill_mid_run_then_resume_from_the_checkpoint(tiny_qwen, tmp_path, files):
    samples, config = files
    out = tmp_path / "sft"
    cmd = [sys.executable, *_cli("sft", config, samples, tiny_qwen, out, "max_steps=12", "save_steps=2",
                                 "per_device_train_batch_size=2", "num_threads=1")]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    try:
        while not list(out.glob("checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    from medgr2_trl.training import checkpoint_step, last_complete_checkpoint

    killed_at = checkpoint_step(last_complete_checkpoint(out))
    assert 2 <= killed_at < 12
    resumed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads((out / "train_result.json").read_text())
    assert result["metrics"]["resumed_from_step"] >= killed_at
    assert result["metrics"]["global_step"] == 12
    steps = [h["step"] for h in result["history"] if "loss" in h]
    # the steps up to the checkpoint kept from the killed run, the rest trained once after it: a rerun
    # from step 0 (or a log kept past the checkpoint) would repeat steps
    assert steps == list(range(1, 13)), steps
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in records if "loss" in r]
    assert logged == steps


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_two_processes_with_accelerate(stage, tiny_qwen, tmp_path, files):
    """``accelerate launch`` with two CPU processes (torchrun + gloo): the data is sharded between them."""
    samples, config = files
    sets = ["max_steps=2", "per_device_train_batch_size=4", "num_threads=1"]
    if stage == "grpo":
        sets += ["max_completion_length=6", "num_generations=4"]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(REPO / "examples" / "accelerate" / "cpu_2proc.yaml"), "--main_process_port",
                str(29500 + os.getpid() % 1000)]
    cmd = [*launcher, *_cli(stage, config, samples, tiny_qwen, tmp_path / stage, *sets)]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.count('"checkpoint"') == 1  # one process reports
    result = json.loads((tmp_path / stage / "train_result.json").read_text())
    assert result["metrics"]["global_step"] == 2
    if stage == "sft":  # 2 steps × 4 per process × 2 processes = 16 = two passes over the 8 samples
        assert result["metrics"]["epoch"] == pytest.approx(2.0)
    assert (tmp_path / stage / "final" / "model.safetensors").is_file()
