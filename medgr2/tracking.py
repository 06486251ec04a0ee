"""Experiment trackers: every stage of a run logs its counts and timings to one tracker run.

``report_to`` in the run config names the trackers (``tensorboard``, ``wandb``; empty: none). The loop
logs each stage's numeric outputs (samples, requests, cost, kept, accuracy, optimizer steps, wall
time ...) under ``<stage>/<name>`` at step = cycle, and the trainers (SFT, GRPO) log their per-step
metrics into the same place: TensorBoard event files under ``runs/<name>/tensorboard/`` (one
sub-folder per trainer call), one W&B run named after the run.

Backends are imported only when a run asks for them, with a clear error naming the extra to
install (``pip install medgr2[tensorboard]`` / ``medgr2[wandb]``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

TrackerName = Literal["tensorboard", "wandb"]
TRACKERS: tuple[str, ...] = ("tensorboard", "wandb")
TENSORBOARD_DIR = "tensorboard"


class TrackerUnavailable(RuntimeError):
    """A tracker named in ``report_to`` cannot be used here (its package is not installed)."""


class Tracker:
    """Logs scalars to the configured backends; a no-op when ``report_to`` is empty."""

    def __init__(self, report_to: Sequence[str], run_dir: str | os.PathLike[str], run_name: str = ""):
        self.report_to, self.run_dir, self.run_name = tuple(report_to), Path(run_dir), run_name or Path(run_dir).name
        self._tb: Any = None
        self._wandb: Any = None
        if "tensorboard" in self.report_to:
            self._tb = _tensorboard_writer(self.run_dir / TENSORBOARD_DIR / "stages")
        if "wandb" in self.report_to:
            self._wandb = _wandb_run(self.run_dir, self.run_name)

    def log(self, stage: str, values: Mapping[str, Any], step: int) -> None:
        """Log the numeric ``values`` of ``stage`` at ``step`` (the cycle; 0 for run-level stages)."""
        scalars = {f"{stage}/{k}": float(v) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not scalars:
            return
        if self._tb is not None:
            for tag, value in scalars.items():
                self._tb.add_scalar(tag, value, global_step=step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({**scalars, "cycle": step})

    @contextlib.contextmanager
    def for_trainer(self, stage_key: str) -> Iterator[dict[str, Any]]:
        """What a trainer needs to log into this run: ``report_to`` and, for TensorBoard, a logging folder
        (set as ``TENSORBOARD_LOGGING_DIR`` while the trainer runs, as transformers reads it)."""
        settings: dict[str, Any] = {"report_to": list(self.report_to)}
        previous = os.environ.get("TENSORBOARD_LOGGING_DIR")
        if self._tb is not None:
            folder = self.run_dir / TENSORBOARD_DIR / stage_key.replace("/", "-")
            settings["env"] = {"TENSORBOARD_LOGGING_DIR": str(folder)}
            os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder)
        try:
            yield settings
        finally:
            if self._tb is not None:
                if previous is None:
                    os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
                else:
                    os.environ["TENSORBOARD_LOGGING_DIR"] = previous

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _tensorboard_writer(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise TrackerUnavailable("report_to: tensorboard needs the tensorboard package: pip install "
                                 "'medgr2[tensorboard]' (or set report_to: [])") from exc
    folder.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(log_dir=str(folder))


def _wandb_run(run_dir: Path, name: str) -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise TrackerUnavailable("report_to: wandb needs the wandb package: pip install 'medgr2[wandb]' (or set "
                                 "report_to: [])") from exc
    return wandb.init(name=name, dir=str(run_dir), reinit=True)
