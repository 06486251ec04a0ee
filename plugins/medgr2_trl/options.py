"""Options of the TRL trainers and reward terms (light: pydantic only, no torch).

``None`` means "not set": the trainer picks a device- and model-aware default (see
:func:`medgr2_trl.training.training_defaults`). The model-size defaults (learning rate, GRPO's KL
weight) resolve to concrete values through :meth:`CommonOptions.resolved` (at training time, from the
model's parameter count) and :meth:`CommonOptions.resolve_for_run` (for ``config show --resolved``,
from ``policy.model``'s weight files or the tiny model the run builds), so what is printed is what
is used.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from medgr2.config import ComponentRef


TINY_PARAMS = 10_000_000
"""Models with fewer parameters get the tiny-model defaults."""


TrainerLogger = Literal["none", "tensorboard", "wandb"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


def count_params(model_dir: str | Path) -> int | None:
    """Parameters stored in a model folder's ``*.safetensors`` files (read from their headers, no
    torch); ``None`` when the folder holds none."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        for key, info in header.items():
            if key != "__metadata__":
                n = 1
                for d in info["shape"]:
                    n *= d
                total += n
    return total


class LoraOptions(_Options):
    """LoRA adapters via peft (merged into the saved model at the end)."""

    r: int = Field(default=16, ge=1, description="Adapter rank.")
    alpha: int = Field(default=32, ge=1, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter inputs.")
    target_modules: list[str] | str = Field(
        default="all-linear", description="Module names to adapt, or 'all-linear' (peft's shortcut).")
    merge: bool = Field(default=True, description="Merge the adapters into the saved model (else save adapters).")


class CommonOptions(_Options):
    """Options shared by the SFT and GRPO trainers."""

    answer_format: Literal["letter", "text", "think"] | None = Field(
        default=None, description="Answer format; None: the run's policy.answer_format (else 'text').")
    learning_rate: float | None = Field(
        default=None, gt=0,
        description="Peak learning rate; None: the trainer's size default (SFT: 2e-3 for tiny models "
                    "(<10M params), else 1e-5; GRPO: 1e-4 / 1e-6).")
    num_train_epochs: float = Field(default=1.0, gt=0, description="Epochs over the samples.")
    max_steps: int = Field(default=-1, description="Stop after this many optimiser steps (-1: epochs decide).")
    per_device_train_batch_size: int = Field(default=8, ge=1, description="Batch size per process.")
    gradient_accumulation_steps: int = Field(default=1, ge=1, description="Micro-batches per optimiser step.")
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1, description="Share of steps for linear warm-up.")
    lr_scheduler_type: str = Field(default="cosine", description="transformers scheduler name.")
    logging_steps: int = Field(default=1, ge=1, description="Log (and write metrics.jsonl) every N steps.")
    save_steps: int = Field(default=50, ge=1, description="Write a resumable checkpoint every N steps.")
    save_total_limit: int | None = Field(default=2, ge=1, description="Keep at most this many checkpoints.")
    resume: bool = Field(default=True, description="Resume from the last complete checkpoint in output_dir.")
    seed: int | None = Field(default=None, description="Training seed; None: the run seed.")
    bf16: bool | None = Field(default=None, description="bfloat16 training; None: on GPU only.")
    gradient_checkpointing: bool | None = Field(default=None, description="None: on GPU only.")
    num_threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads; None: CPU cores divided by the number of processes.")
    report_to: TrainerLogger | list[TrainerLogger] = Field(
        default="none", description="Trainer loggers: none, tensorboard or wandb (none: the run's report_to).")
    lora: LoraOptions | None = Field(default=None, description="Train LoRA adapters instead of all weights.")
    trl_args: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments passed verbatim to the TRL config.")

    size_defaults: ClassVar[dict[str, dict[str, float]]] = {
        "tiny": {"learning_rate": 2e-3}, "large": {"learning_rate": 1e-5}}
    """Values the ``None`` options take for tiny (< ``TINY_PARAMS``) and larger models."""

    def resolved(self, n_params: int | None) -> Any:
        """A copy whose size-dependent ``None`` options hold the values used for a model of
        ``n_params`` parameters (unchanged when ``n_params`` is unknown)."""
        if n_params is None:
            return self
        size = "tiny" if n_params < TINY_PARAMS else "large"
        update = {k: v for k, v in self.size_defaults[size].items() if getattr(self, k) is None}
        return self.model_copy(update=update) if update else self

    def resolve_for_run(self, config: Any) -> Any:
        """:meth:`resolved` for a run config: ``policy.model``'s parameters (counted from its weight
        files), or a tiny model when the run builds one (``policy.model`` unset)."""
        model = getattr(getattr(config, "policy", None), "model", None)
        if model is None:
            return self.resolved(0)
        from medgr2.hub import resolve_model

        try:
            folder = resolve_model(model, what="policy.model")
        except FileNotFoundError:
            return self.resolved(None)  # the run reports the missing model; no size-aware defaults here
        return self.resolved(count_params(folder))


class SFTOptions(CommonOptions):
    """Options of the ``sft`` trainer (TRL ``SFTTrainer`` on image + question + options → answer)."""

    with_rationale: bool = Field(
        default=False,
        description="Targets include the rationale (before 'Answer: ...'; always inside <think> for 'think').")
    max_length: int | None = Field(default=None, ge=16, description="Truncate sequences to this many tokens.")


class RewardTermSpec(ComponentRef):
    """One weighted term of the GRPO reward (its name and options are checked by ``config validate``)."""

    kind: ClassVar[str] = "reward_term"
    name_field: ClassVar[str] = "term"

    term: str = Field(description="A registered reward_term name (reward_model, answer_match, format ...).")
    weight: float = Field(default=1.0, description="Weight of the term in the summed reward.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options of the term (its own model).")


class CollapseGuardOptions(_Options):
    """The GRPO collapse guard: the share of valid answers (as the evaluation counts them, see
    ``scorer``) among greedy answers to a few training prompts, measured before GRPO, every
    ``every_steps`` steps and at the end. Below the threshold GRPO stops and the best weights
    measured (the highest rate, the later on ties) become the result, with a warning. The best
    weights are held in CPU memory (the trainable ones: only the adapters with LoRA)."""

    probe_size: int = Field(default=16, ge=1, description="Training prompts in the probe set (evenly spaced).")
    every_steps: int = Field(default=10, ge=1, description="Probe every N optimiser steps (and at the end).")
    min_ratio: float = Field(default=0.5, ge=0, le=1,
                             description="Collapse: the rate falls below this share of the starting rate.")
    min_rate: float = Field(default=0.0, ge=0, le=1,
                            description="Collapse: the rate falls below this absolute floor (capped at the "
                                        "starting rate).")
    max_new_tokens: int | None = Field(default=None, ge=1,
                                       description="Tokens per probe answer; None: max_completion_length.")
    scorer: str = Field(default="auto",
                        description="What counts as a valid answer: a registered scorer's verdict (e.g. medgr2); "
                                    "'auto': the run's evaluation.scorer (else 'extract'); 'extract': "
                                    "medgr2.answers.extract finds an option.")


class GRPOOptions(CommonOptions):
    """Options of the ``grpo`` trainer (TRL ``GRPOTrainer`` with multimodal prompts)."""

    per_device_train_batch_size: int = Field(
        default=8, ge=1, description="Completions per process per step (a multiple of num_generations).")
    num_generations: int = Field(default=4, ge=2, description="Completions sampled per prompt (the group).")
    max_completion_length: int = Field(default=64, ge=1, description="Tokens generated per completion.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature of the rollouts.")
    learning_rate: float | None = Field(
        default=None, gt=0,
        description="Peak learning rate; None: 1e-4 for tiny models (<10M params), else 1e-6 (well below "
                    "SFT's: GRPO at SFT's 2e-3 turned a 56 % tiny policy into 0 % valid answers).")
    beta: float | None = Field(
        default=None, ge=0,
        description="KL weight to the starting policy (> 0 loads it as a reference model); None: 0.04 for "
                    "tiny models, else 0.0.")
    loss_type: str = Field(default="dapo", description="TRL loss type: grpo, dr_grpo, dapo, bnpo ...")
    scale_rewards: str = Field(default="group", description="Advantage scaling: group, batch or none.")
    reward: list[RewardTermSpec] = Field(
        default_factory=lambda: [RewardTermSpec(term="reward_model", weight=0.8),
                                 RewardTermSpec(term="answer_match", weight=0.2)],
        description="Weighted reward terms; the default α=0.8 R_φ + β=0.2 match reproduces the paper.")
    use_vllm: bool = Field(default=False, description="Generate rollouts with vLLM (GPU only).")
    vllm_mode: Literal["colocate", "server"] = Field(
        default="colocate", description="vLLM in the training processes (colocate) or a `trl vllm-serve` server.")
    collapse_guard: CollapseGuardOptions | None = Field(
        default_factory=lambda: CollapseGuardOptions(),
        description="Stop GRPO and keep the best weights when the valid-answer rate collapses; None: off.")

    size_defaults: ClassVar[dict[str, dict[str, float]]] = {
        "tiny": {"learning_rate": 1e-4, "beta": 0.04}, "large": {"learning_rate": 1e-6, "beta": 0.0}}


class RewardModelTermOptions(_Options):
    """Options of the ``reward_model`` term."""

    paper_exact: bool = Field(default=False, description="Keep raw r in [-6, 10] instead of (r + 6) / 16.")


class FormatTermOptions(_Options):
    """Options of the ``format`` term."""

    partial: float = Field(default=0.5, ge=0, le=1,
                           description="Reward for an <answer> block without a well-formed <think> block.")
