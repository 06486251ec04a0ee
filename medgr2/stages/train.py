"""Stage 3: train the policy (SFT, GRPO ...) through a :class:`~medgr2.interfaces.PolicyTrainer`.

Used by ``medgr2 sft`` / ``medgr2 grpo`` and by the loop. No heavy import at module level: the
trainers import torch/TRL when they run, and the tiny model builder only when one is needed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgr2 import artifacts
from medgr2.data import TrainResult, VQASample
from medgr2.interfaces import PolicyTrainer, StageContext


def ensure_policy(policy: Any, work_dir: str | os.PathLike[str], *, seed: int = 0, registry: Any = None) -> Path:
    """The starting policy folder: ``policy.model`` when set, else a tiny VLM built under ``work_dir``.

    Args:
        policy: The ``policy`` config section (:class:`medgr2.config.PolicySection`): ``model`` and
            ``tiny_arch`` are read.
        work_dir: Where a tiny model is built (``work_dir/tiny-<arch>-<seed>``; reused when present).
        seed: Seed of the tiny model's random weights.
        registry: Where the ``tiny_policy`` named by ``policy.tiny_arch`` is looked up (default: the
            process registry).

    Raises:
        FileNotFoundError: ``policy.model`` is neither a model folder nor a Hub id in the local cache.
    """
    if policy.model:
        from medgr2.hub import resolve_model

        return resolve_model(policy.model, what="policy.model")
    target = Path(work_dir) / f"tiny-{policy.tiny_arch}-{seed}"
    if (target / "config.json").is_file():
        return target
    from medgr2.plugins import ensure_registry

    build_tiny = ensure_registry(registry).create("tiny_policy", policy.tiny_arch)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    build_tiny(staging, seed=seed)
    try:
        os.replace(staging, target)  # atomic: concurrent processes (accelerate) agree on one folder
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


def train_policy(trainer: PolicyTrainer, samples: Sequence[VQASample], model_path: str | os.PathLike[str],
                 output_dir: str | os.PathLike[str], context: StageContext) -> TrainResult:
    """Train ``trainer`` on ``samples`` from ``model_path`` into ``output_dir`` and return its result.

    Checks the inputs first (clear errors instead of a failure deep in a trainer), reports
    progress through ``context.reporter`` and writes ``output_dir/train_result.json``.
    """
    from medgr2.artifacts import TRAIN_RESULT
    from medgr2.store import write_json

    samples = list(samples)
    if not samples:
        raise ValueError("no samples to train on: the kept set is empty (check the filters' thresholds)")
    model_path = Path(model_path)
    if not (model_path / "config.json").is_file():
        raise FileNotFoundError(f"policy {str(model_path)!r} is not a model folder (no config.json)")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    name = type(trainer).__name__
    context.reporter.log(f"{name}: {len(samples)} samples, {model_path} -> {output_dir}")
    result = trainer.train(samples, model_path, output_dir, context)
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(output_dir / TRAIN_RESULT, result)
    context.reporter.log(f"{name}: done in {result.wall_s:.1f} s -> {result.checkpoint}")
    return result


def launch_training(stage: str, config_path: str | os.PathLike[str], samples: Sequence[VQASample],
                    model_path: str | os.PathLike[str], output_dir: str | os.PathLike[str], context: StageContext,
                    launcher: Any, *, reward_model: str | os.PathLike[str] | None = None) -> TrainResult:
    """Run ``medgr2 <stage>`` under ``accelerate launch`` (``policy.launcher``) and return its result.

    The loop stays in one process and orchestrates; this launches the stage's own command on
    ``launcher.num_processes`` processes with the user's accelerate config, on the run's resolved
    config (``config_path``), the samples written beside ``output_dir``, and the same cycle (so the
    seed is the loop's), then reads the ``train_result.json`` that rank 0 wrote. The child processes
    load the plugins this process loaded (``--plugin`` specs, ``MEDGR2_PLUGINS``, entry points).
    """
    import subprocess
    import sys

    from medgr2.artifacts import TRAIN_RESULT
    from medgr2.plugins import cli_plugin_args
    from medgr2.stages import StageFailed
    from medgr2.store import read_json, write_jsonl

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    samples_path = output_dir.parent / artifacts.SAMPLES
    write_jsonl(samples_path, samples)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(launcher.num_processes)]
    if launcher.config_file:
        cmd += ["--config_file", str(launcher.config_file)]
    if launcher.main_process_port:
        cmd += ["--main_process_port", str(launcher.main_process_port)]
    cmd += ["-m", "medgr2", *cli_plugin_args(), stage, str(config_path), "--samples", str(samples_path),
            "--model", str(model_path), "--out", str(output_dir), "--cycle", str(max(1, context.cycle)), "--quiet"]
    if reward_model is not None:
        cmd += ["--reward-model", str(reward_model)]
    context.reporter.log(f"{stage}: accelerate launch on {launcher.num_processes} process(es) -> {output_dir}")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}
    for inherited in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # this process is no rank of the launched job
        env.pop(inherited, None)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=launcher.timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise StageFailed(stage, f"the launched training ran past policy.launcher.timeout_s={launcher.timeout_s}: "
                                 f"partial checkpoints are kept in {output_dir}; --resume continues") from exc
    (output_dir.parent / "launch.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    result_path = output_dir / TRAIN_RESULT
    if proc.returncode != 0 or not result_path.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
        raise StageFailed(stage, f"`accelerate launch` exited {proc.returncode} (full log: "
                                 f"{output_dir.parent / 'launch.log'}):\n{tail}")
    return read_json(result_path, TrainResult)
