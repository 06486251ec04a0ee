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
