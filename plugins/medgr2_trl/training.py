"""What the SFT and GRPO trainers share: defaults, data rows, checkpoints, metrics, saving.

Device-aware defaults (:func:`training_defaults`): on CPU ``use_cpu=True``, ``bf16=False`` and no
gradient checkpointing (bf16 is ~15x slower on CPU); on GPU bf16 and gradient checkpointing.
Training resumes from the last *complete* checkpoint (one whose ``trainer_state.json``, written
last by the Trainer, exists) in ``output_dir``. Logs go to ``output_dir/metrics.jsonl``; on resume
the records after the checkpoint's step are dropped first, so no step appears twice.

A training stage does its work or fails: one that ends with 0 optimiser steps raises
:class:`ZeroStepsError` instead of saving an untrained model as "done".
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgr2.data import TrainResult, VQASample
from medgr2.interfaces import StageContext
from medgr2_trl.options import CommonOptions

FINAL_DIR = "final"
"""Sub-folder of ``output_dir`` holding the trained model (what ``TrainResult.checkpoint`` names)."""
METRICS_FILE = "metrics.jsonl"


class ZeroStepsError(RuntimeError):
    """Training ended without a single optimiser step (nothing was learnt)."""


def model_params(model: Any) -> int:
    """Number of parameters of a torch model."""
    return sum(p.numel() for p in model.parameters())
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def report_to(options: CommonOptions, context: StageContext) -> str | list[str]:
    """The trainer's loggers: its own ``report_to`` when set, else the run's trackers (``report_to``)."""
    own = [options.report_to] if isinstance(options.report_to, str) else list(options.report_to)
    if own and own != ["none"]:
        return own
    return list(context.report_to) or "none"


def answer_format(options: CommonOptions, context: StageContext) -> str:
    """The answer format: the trainer's option, else the run's ``policy.answer_format``, else ``text``."""
    return options.answer_format or context.answer_format or "text"


def world_size() -> int:
    """Number of training processes (``accelerate launch``/``torchrun`` set ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def use_bf16(options: CommonOptions) -> bool:
    """bfloat16 when asked for, else on GPU only."""
    return on_gpu() if options.bf16 is None else options.bf16


def set_threads(options: CommonOptions) -> None:
    """Set torch's CPU threads: the option, else the cores shared evenly between processes."""
    import torch

    if options.num_threads is not None:
        torch.set_num_threads(options.num_threads)
    elif not on_gpu():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size()))


def training_defaults(options: CommonOptions, context: StageContext, model: Any) -> dict[str, Any]:
    """Keyword arguments every TRL config gets: device-aware precision, schedule, saving, logging."""
    gpu = on_gpu()
    lr = options.resolved(model_params(model)).learning_rate
    return {
        "use_cpu": not gpu,
        "bf16": use_bf16(options),
        "activation_checkpointing": gpu if options.gradient_checkpointing is None else options.gradient_checkpointing,
        "learning_rate": lr,
        "num_train_epochs": options.num_train_epochs,
        "max_steps": options.max_steps,
        "per_device_train_batch_size": options.per_device_train_batch_size,
        "gradient_accumulation_steps": options.gradient_accumulation_steps,
        "warmup_steps": options.warmup_ratio,
        "lr_scheduler_type": options.lr_scheduler_type,
        "logging_steps": options.logging_steps,
        "save_strategy": "steps",
        "save_steps": options.save_steps,
        "save_total_limit": options.save_total_limit,
        "seed": context.seed if options.seed is None else options.seed,
        "report_to": report_to(options, context),
        "remove_unused_columns": False,
        "dataloader_pin_memory": gpu,
        "disable_tqdm": True,
    }


def load_policy(model_path: Path, bf16: bool) -> tuple[Any, Any]:
    """The policy model (trainable, float32 unless bf16) and its multimodal processor."""
    import torch
    from medgr2_hf.vlm import load_processor
    from transformers import AutoModelForImageTextToText

    if not (Path(model_path) / "config.json").is_file():
        raise FileNotFoundError(f"policy {model_path} is not a model folder (no config.json): build one with "
                                "`medgr2 models tiny --out DIR` or set policy.model to a saved checkpoint")
    processor = load_processor(Path(model_path))
    model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch.bfloat16 if bf16 else torch.float32)
    return model, processor


def lora_config(options: CommonOptions) -> Any:
    """A peft ``LoraConfig`` from the options (``None`` without LoRA)."""
    if options.lora is None:
        return None
    from peft import LoraConfig

    lo = options.lora
    return LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules,
                      task_type="CAUSAL_LM")


def sample_images(sample: VQASample, context: StageContext) -> list[Any]:
    """The sample's images as RGB PIL images, decoded through the registered image loaders."""
    from medgr2.images import open_image

    return [open_image(ref, context.registry).convert("RGB") for ref in sample.images]


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The highest ``checkpoint-N`` in ``output_dir`` whose ``trainer_state.json`` exists."""
    if not output_dir.is_dir():
        return None
    found = []
    for child in output_dir.iterdir():
        m = _CHECKPOINT.match(child.name)
        if m and child.is_dir() and (child / "trainer_state.json").is_file():
            found.append((int(m.group(1)), child))
    return max(found)[1] if found else None


def checkpoint_step(checkpoint: Path | None) -> int:
    if checkpoint is None:
        return 0
    return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])


_SHOWN = ("loss", "reward", "reward_std", "kl", "monitor/rphi_match_corr", "monitor/rphi_group_auroc",
          "monitor/frac_tied_groups", "learning_rate")


def metrics_callback(path: Path, history: list[dict[str, Any]], reporter: Any) -> Any:
    """A ``TrainerCallback`` appending every log (with its step) to ``path`` and ``history``, and
    showing a one-line summary through ``reporter`` (main process only)."""
    from transformers import TrainerCallback

    from medgr2.store import JsonlAppender

    class MetricsCallback(TrainerCallback):
        """Writes Trainer logs to a JSONL file (flushed per record, no fsync: cheap) and the reporter."""

        def __init__(self) -> None:
            self.out: JsonlAppender | None = None
            self.main = int(os.environ.get("RANK", "0")) == 0

        def write(self, record: dict[str, Any], once: bool = False) -> None:
            """Append one record (main process only): what ``on_log`` does, for records of our own;
            ``once``: not when a record of that step with the same keys is there already (a resume)."""
            if not self.main or (once and any(h.get("step") == record.get("step") and h.keys() == record.keys()
                                              for h in history)):
                return
            history.append(record)
            if self.out is None:
                self.out = JsonlAppender(path, fsync=False)
            self.out.append(record)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any):
            self.main = state.is_world_process_zero
            if not state.is_world_process_zero or not logs:
                return
            record = {"step": state.global_step, "epoch": state.epoch,
                      **{k: v for k, v in logs.items() if isinstance(v, (int, float, str))}}
            self.write(record)
            shown = " ".join(f"{k.split('/')[-1]}={record[k]:.4g}" for k in _SHOWN
                             if isinstance(record.get(k), (int, float)))
            if shown:
                reporter.log(f"step {state.global_step}/{state.max_steps} {shown}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any):
            if self.out is not None:
                self.out.close()
                self.out = None

    return MetricsCallback()


def make_callbacks(output_dir: Path, history: list[dict[str, Any]], context: StageContext) -> list[Any]:
    """The callbacks every trainer gets (metrics file + reporter)."""
    return [metrics_callback(output_dir / METRICS_FILE, history, context.reporter)]


def quiet_stdout(trainer: Any) -> None:
    """Drop the Trainer's own stdout printing/progress bars: progress goes through the reporter."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def restore_weights(trainer: Any, checkpoint: Path) -> None:
    """Load the checkpoint's weights into ``trainer.model`` the way ``from_pretrained`` does.

    The Trainer's own resume reads ``model.safetensors`` by raw key names, but Qwen2.5-VL and LLaVA
    checkpoints are saved with legacy key names that only ``from_pretrained`` maps back: the raw
    load matches no key and the run silently continues from the *initial* weights. So the weights
    are loaded here and the Trainer's weight loading is skipped (it still restores the optimizer,
    scheduler, RNG and step). Adapters (peft) and DeepSpeed/FSDP keep the Trainer's own path.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "peft_config") or trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        return
    loaded = type(model).from_pretrained(str(checkpoint), dtype=model.dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    trainer._load_from_checkpoint = lambda *args, **kwargs: None  # weights are in place already


def trim_metrics(path: Path, upto_step: int, history: list[dict[str, Any]]) -> None:
    """Keep only the records of ``path`` up to ``upto_step`` (the step training restarts from) and put
    them in ``history``: a resumed run re-logs the later steps, which must not appear twice."""
    if int(os.environ.get("RANK", "0")) != 0 or not path.is_file():
        return
    from medgr2.store import atomic_write_text

    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if isinstance(record, dict) and int(record.get("step", 0)) <= upto_step:
            kept.append(record)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    history[:0] = kept


def run_training(trainer: Any, options: CommonOptions, output_dir: Path, history: list[dict[str, Any]],
                 processor: Any, context: StageContext, started: float, *, guard: Any = None,
                 warnings_: Sequence[str] = (), metrics: dict[str, float] | None = None) -> TrainResult:
    """Train (resuming when a complete checkpoint exists), save the final model, return the result.

    ``guard`` is a collapse guard callback (already added to the trainer) whose kept weights end up
    in the saved model; ``warnings_`` and ``metrics`` are added to the result's.

    Raises:
        ZeroStepsError: training ended with 0 optimiser steps (the model would be the untrained one).
    """
    quiet_stdout(trainer)
    checkpoint = last_complete_checkpoint(output_dir) if options.resume else None
    resumed_from = checkpoint_step(checkpoint)
    trim_metrics(output_dir / METRICS_FILE, resumed_from, history)
    if checkpoint is not None:
        context.reporter.log(f"resuming from {checkpoint} (step {resumed_from})")
        restore_weights(trainer, checkpoint)
    with warnings.catch_warnings():
        # TRL still calls the deprecated alias; the warning says nothing the user can act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        out = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    steps = int(trainer.state.global_step)
    if steps == 0:
        n_rows = len(trainer.train_dataset) if hasattr(trainer.train_dataset, "__len__") else "?"
        raise ZeroStepsError(
            f"{type(trainer).__name__}: training ended after 0 optimiser steps ({n_rows} rows, "
            f"per_device_train_batch_size {trainer.args.per_device_train_batch_size}, gradient_accumulation_steps "
            f"{trainer.args.gradient_accumulation_steps}, max_steps {trainer.args.max_steps}): nothing was learnt. "
            "Give more samples, or lower per_device_train_batch_size / gradient_accumulation_steps, or set "
            "max_steps > 0")
    final = output_dir / FINAL_DIR
    model = trainer.model
    if options.lora is not None and options.lora.merge and hasattr(model, "merge_and_unload"):
        model = trainer.accelerator.unwrap_model(model).merge_and_unload()
        if trainer.accelerator.is_main_process:
            model.save_pretrained(final)
    else:
        trainer.save_model(str(final))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(final)
    trainer.accelerator.wait_for_everyone()
    result_metrics = {k: float(v) for k, v in (out.metrics or {}).items() if isinstance(v, (int, float))}
    result_metrics["global_step"] = float(steps)
    result_metrics["optimizer_steps"] = float(steps)
    result_metrics["resumed_from_step"] = float(resumed_from)
    result_metrics["learning_rate"] = float(trainer.args.learning_rate)
    result_metrics.update(metrics or {})
    notes = list(warnings_)
    kept = steps
    if guard is not None:
        result_metrics.update(guard.metrics)
        kept = guard.kept_step if guard.kept_step is not None else steps
        if guard.warning:
            notes.append(guard.warning)
    return TrainResult(checkpoint=str(final), version=f"{final.parent.name}@{kept}", metrics=result_metrics,
                       history=tuple(history), wall_s=time.monotonic() - started, warnings=tuple(notes))
