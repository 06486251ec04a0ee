"""The ``sft`` trainer: TRL ``SFTTrainer`` on image + question + options → answer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgr2.answers import build_prompt, target_text
from medgr2.data import TrainResult, VQASample
from medgr2.interfaces import StageContext
from medgr2_trl import training
from medgr2_trl.options import SFTOptions


def sft_target(sample: VQASample, fmt: str, with_rationale: bool) -> str:
    """The completion SFT teaches: the format's target, after the rationale when asked for."""
    target = target_text(sample, fmt)
    if with_rationale and fmt != "think" and sample.rationale.strip():
        return f"{sample.rationale.strip()}\nAnswer: {target}"
    return target


def sft_rows(samples: Sequence[VQASample], fmt: str, with_rationale: bool,
             context: StageContext) -> list[dict[str, Any]]:
    """Prompt-completion rows (conversational, images in ``images``) for TRL's vision collator."""
    return [{
        "images": training.sample_images(s, context),
        "prompt": [{"role": "user", "content": build_prompt(s, fmt)}],
        "completion": [{"role": "assistant", "content": sft_target(s, fmt, with_rationale)}],
    } for s in samples]


class SFTPolicyTrainer:
    """Supervised fine-tuning of a VLM policy on kept samples (completion-only loss)."""

    def __init__(self, options: SFTOptions | None = None):
        self.options = options or SFTOptions()

    def train(self, samples: Sequence[VQASample], model_path: Path, output_dir: Path,
              context: StageContext) -> TrainResult:
        """Fine-tune ``model_path`` on ``samples``; the model lands in ``output_dir/final``."""
        if not samples:
            raise ValueError("sft: no samples to train on (did the filters drop everything?)")
        started = time.monotonic()
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        opts = self.options
        training.set_threads(opts)
        output_dir = Path(output_dir)
        fmt = training.answer_format(opts, context)
        model, processor = training.load_policy(Path(model_path), bf16=training.use_bf16(opts))
        dataset = Dataset.from_list(sft_rows(samples, fmt, opts.with_rationale, context))
        kwargs = training.training_defaults(opts, context, model)
        kwargs.update(max_length=opts.max_length, completion_only_loss=True, packing=False,
                      dataset_kwargs={"skip_prepare_dataset": True})
        kwargs.update(opts.trl_args)
        config = SFTConfig(output_dir=str(output_dir), **kwargs)
        if config.dataloader_drop_last and len(samples) < config.per_device_train_batch_size * config.world_size:
            raise ValueError(
                f"sft: {len(samples)} sample(s) cannot fill one batch of {config.per_device_train_batch_size} × "
                f"{config.world_size} process(es) with dataloader_drop_last, so SFT would take 0 optimiser steps: "
                "lower per_device_train_batch_size or drop dataloader_drop_last from trl_args")
        history: list[dict[str, Any]] = []
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=processor,
                             peft_config=training.lora_config(opts),
                             callbacks=training.make_callbacks(output_dir, history, context))
        result = training.run_training(trainer, opts, output_dir, history, processor, context, started)
        from medgr2_hf.cards import write_training_card  # the model card (README.md) of the saved folder

        write_training_card(result, samples=samples, base_model=model_path, method="SFT",
                            answer_format=fmt, context=context, output_dir=output_dir)
        return result
