"""medgr2's GRPO step time vs a bare TRL ``GRPOTrainer``, side by side in one run.

Both train the same tiny Qwen2.5-VL (built offline) on the same samples, prompts and images with
the same ``GRPOConfig`` and the same reward computations (R_φ from a stand-in reward model, and
answer match). The bare run calls the reward functions directly; the medgr2 run goes through
:class:`medgr2_trl.grpo.GRPOPolicyTrainer` (registry-built terms, monitors, metrics file,
reporter). Runs alternate (bare first, then medgr2 first ...) so that machine load hits both alike.
The figure is the median optimiser-step time after ``--warmup`` steps; the goal is ≤ 5 % overhead.

    .venv/bin/python benchmarks/bench_train_grpo_overhead.py [--steps 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class LengthRewardModel:
    """A stand-in R_φ: longer answers score higher, on [-6, 10]."""

    version = "length"

    def score(self, inputs, context=None):
        return [min(10.0, -6.0 + len(x.answer) / 2.0) for x in inputs]


def make_samples(root: Path, n: int):
    from PIL import Image

    from medgr2.data import ImageRef, VQASample

    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        sick = i % 2 == 0
        Image.new("RGB", (64, 64), (200, 40, 40) if sick else (40, 40, 200)).save(root / f"{i}.png")
        out.append(VQASample(images=(ImageRef(path=f"{i}.png", root=str(root)),), question=f"Case {i}: finding?",
                             options=("normal", "pneumonia"), answer="pneumonia" if sick else "normal"))
    return out


def step_timer():
    """A callback recording the wall time from one step's start to the next (logging and saving included)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.lengths: list[float] = []
            self._t: float | None = None

        def on_step_begin(self, args, state, control, **kw):
            now = time.perf_counter()
            if self._t is not None:
                self.times.append(now - self._t)
            self._t = now

        def on_train_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self._t)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(logs["completions/mean_length"])

    return StepTimer()


def grpo_kwargs(args, seed: int) -> dict:
    return {"max_steps": args.steps, "per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 16,
            "learning_rate": 1e-4, "beta": 0.0, "loss_type": "dapo", "temperature": 1.0, "seed": seed}


def run_bare(args, model_path: Path, samples, context, out: Path):
    """Plain TRL: the user's own dataset, reward functions and GRPOConfig."""
    import functools

    import torch
    from datasets import Dataset
    from medgr2_hf.vlm import load_processor
    from medgr2_trl.grpo import grpo_rows
    from medgr2_trl.rewards import answer_match, reward_model
    from transformers import AutoModelForImageTextToText
    from trl import GRPOConfig, GRPOTrainer

    rows = grpo_rows(samples, "text", context)
    processor = load_processor(model_path)
    model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch.float32)
    rm = functools.partial(reward_model, model=context.reward_model)
    rm.__name__ = "reward_model"  # type: ignore[attr-defined]
    config = GRPOConfig(output_dir=str(out), use_cpu=True, bf16=False, activation_checkpointing=False,
                        report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
                        reward_weights=[0.8, 0.2], remove_unused_columns=False, **grpo_kwargs(args, 0))
    timer = step_timer()
    trainer = GRPOTrainer(model=model, reward_funcs=[rm, answer_match], args=config,
                          train_dataset=Dataset.from_list(rows), processing_class=processor, callbacks=[timer])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return timer


def run_medgr2(args, model_path: Path, samples, context, out: Path):
    """medgr2's grpo trainer with the same settings (checkpointing off like the bare run)."""
    from unittest import mock

    from medgr2_trl import training
    from medgr2_trl.grpo import GRPOPolicyTrainer
    from medgr2_trl.options import GRPOOptions, RewardTermSpec

    timer = step_timer()
    kw = grpo_kwargs(args, 0)
    opts = GRPOOptions(**{k: v for k, v in kw.items() if k != "seed"}, seed=0, num_threads=args.threads,
                       warmup_ratio=0.0, lr_scheduler_type="linear", save_steps=10_000,
                       collapse_guard=None,  # its probes are an opt-out feature, not framework overhead
                       reward=[RewardTermSpec(term="reward_model", weight=0.8),
                               RewardTermSpec(term="answer_match", weight=0.2)])
    original = training.make_callbacks
    with mock.patch.object(training, "make_callbacks", lambda *a: [*original(*a), timer]):
        GRPOPolicyTrainer(opts).train(samples, model_path, out, context)
    return timer


def reward_layer_cost(context, samples, n: int = 300) -> tuple[float, float]:
    """Seconds per step of the reward computation: bare functions vs medgr2's terms + monitors."""
    import functools

    from medgr2_trl.grpo import build_terms
    from medgr2_trl.options import RewardTermSpec
    from medgr2_trl.rewards import answer_match, reward_model

    rows = [r for r in __import__("medgr2_trl.grpo", fromlist=["grpo_rows"]).grpo_rows(samples[:2], "text", context)
            for _ in range(4)]
    cols = {k: [r[k] for r in rows] for k in ("answer", "options", "question", "image_ref")}
    completions = [[{"role": "assistant", "content": "pneumonia (B)"}]] * len(rows)
    bare = [functools.partial(reward_model, model=context.reward_model), answer_match]
    terms, _ = build_terms([RewardTermSpec(term="reward_model", weight=0.8),
                            RewardTermSpec(term="answer_match", weight=0.2)], context, 4)
    logged: dict = {}
    timings = []
    for funcs, extra in ((bare, {}), (terms, {"log_metric": logged.__setitem__})):
        t0 = time.perf_counter()
        for _ in range(n):
            for f in funcs:
                f(completions=completions, **cols, **extra)
        timings.append((time.perf_counter() - t0) / n)
    return timings[0], timings[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from medgr2_hf.tiny import build_tiny_vlm

    from medgr2.interfaces import StageContext
    from medgr2.plugins import load_registry

    tmp = Path(tempfile.mkdtemp(prefix="bench-grpo-"))
    model_path = build_tiny_vlm("qwen2_5_vl", tmp / "model", seed=0)
    samples = make_samples(tmp / "images", 16)
    registry = load_registry()
    context = StageContext(work_dir=tmp / "work", registry=registry, reward_model=LengthRewardModel())
    bare: list[float] = []
    ours: list[float] = []
    for r in range(args.repeats):
        order = [("bare", run_bare, bare), ("medgr2", run_medgr2, ours)]
        for name, fn, bucket in order if r % 2 == 0 else order[::-1]:  # neither always runs first
            t0 = time.perf_counter()
            timer = fn(args, model_path, samples, context, tmp / f"{name}-{r}")
            times = timer.times[args.warmup:]
            bucket += times
            print(f"repeat {r} {name:7s} steps={len(timer.times)} median step={statistics.median(times):.4f} s "
                  f"mean completion length={statistics.mean(timer.lengths):.2f} tokens "
                  f"run={time.perf_counter() - t0:.1f} s", file=sys.stderr)
    b, m = statistics.median(bare), statistics.median(ours)
    print(f"GRPO step time, tiny Qwen2.5-VL, batch 8 (2 prompts x 4 generations), 16 new tokens, "
          f"{args.threads} thread(s), {len(bare)} steps each:")
    print(f"  bare GRPOTrainer : median {b:.4f} s/step (mean {statistics.mean(bare):.4f})")
    print(f"  medgr2 grpo      : median {m:.4f} s/step (mean {statistics.mean(ours):.4f})")
    print(f"  overhead         : {100 * (m / b - 1):+.1f} % of the median step (goal <= 5 %)")
    bmin, mmin = min(bare), min(ours)
    print(f"  fastest step     : bare {bmin:.4f} s, medgr2 {mmin:.4f} s ({100 * (mmin / bmin - 1):+.1f} %)")
    rb, rm = reward_layer_cost(context, samples)
    print(f"  reward layer     : bare {1e3 * rb:.3f} ms/step, medgr2 terms+monitors {1e3 * rm:.3f} ms/step "
          f"(+{1e3 * (rm - rb):.3f} ms = {100 * (rm - rb) / b:.2f} % of a bare step)")


if __name__ == "__main__":
    main()
