"""GPU check: paper-scale step times and memory with random weights from the real configs, one table.

One command, under 8 minutes on one CUDA GPU, nothing downloaded::

    .venv/bin/python benchmarks/gpu_check.py                 # CUDA: Qwen2.5-VL-3B and -7B, bf16
    .venv/bin/python benchmarks/gpu_check.py --cpu-tiny      # the same code paths, tiny configs, CPU

What it measures (each a row of the table; see docs/gpu-check.md):

* **SFT step** (3B, 7B): the paper's ``per_device_train_batch_size`` 4 × ``gradient_accumulation_steps``
  4, bf16 weights, gradient checkpointing, fused AdamW; one optimizer step = 4 forward+backward passes
  over a synthetic batch of image + text tokens (``--image-side`` px images, ``--sft-text`` text tokens).
* **GRPO step** (3B, 7B): the paper's ``num_generations`` 8 (one prompt × 8 completions per device),
  ``max_completion_length`` 512: ``generate`` of the 8 completions (sampling, temperature 1, no early
  stop), then one loss step (policy forward+backward on the completions, β = 0.04 against a frozen
  reference copy, as TRL's GRPO loss) and the optimizer step.
* **vLLM rollouts** (3B): 8 prompts × 8 completions × 512 tokens with dummy weights, when vLLM is
  importable (a row saying "not installed" otherwise); run in a subprocess so its memory is its own.
* **R_φ scoring** (3B VLM reward model, ``medgr2_reward.model.VLMRewardModel`` with its real
  ``VLMBackbone`` code): throughput at batch 1 vs batch 32 on the same inputs and the largest score
  difference between the two (batch invariance), float32 (the scorer's production arithmetic) and bf16.
* **Loop overhead around TRL** (tiny model on the same device): medgr2's ``grpo`` trainer against a
  bare TRL ``GRPOTrainer`` with the same settings (from ``bench_train_grpo_overhead.py``), plus the
  reward layer's extra milliseconds per step as a share of the paper-scale GRPO step measured above.

Models are ``Qwen2_5_VLForConditionalGeneration`` built from the config values written below (those
of ``Qwen/Qwen2.5-VL-3B-Instruct`` and ``-7B-Instruct``), directly on the device in bf16. A row that
runs out of memory says so (with the memory the device had) instead of ending the run; 7B GRPO with a
reference model and AdamW states does not fit 80 GB without sharding (the paper used 8 GPUs, ZeRO-3).
Without CUDA (or with ``--cpu-tiny``) every row runs the same code on tiny configs in float32, so the
script is exercised by ``tests/bench/test_gpu_check.py`` and cannot rot. Exit status 1 if a row failed
for any reason other than "not installed" or out-of-memory.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "in_chans": 3,
           "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
           "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "hidden_act": "silu"}
_IDS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
        "vision_end_token_id": 151653}


def _text(vocab: int, hidden: int, inter: int, layers: int, heads: int, kv: int, tie: bool, mrope: list[int],
          specials: tuple[int, int] = (151643, 151645), max_pos: int = 128000) -> dict[str, Any]:
    """A Qwen2.5-VL text config (bos = pad = ``specials[0]``, eos = ``specials[1]``)."""
    return {"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "max_position_embeddings": max_pos,
            "rms_norm_eps": 1e-6, "hidden_act": "silu", "tie_word_embeddings": tie,
            "bos_token_id": specials[0], "eos_token_id": specials[1], "pad_token_id": specials[0],
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope}}


CONFIGS: dict[str, dict[str, Any]] = {
    # config.json of Qwen/Qwen2.5-VL-3B-Instruct (text and vision values)
    "3b": {"text": _text(151936, 2048, 11008, 36, 16, 2, True, [16, 24, 24]),
           "vision": {**_VISION, "out_hidden_size": 2048}, "ids": _IDS, "tie": True},
    # config.json of Qwen/Qwen2.5-VL-7B-Instruct
    "7b": {"text": _text(152064, 3584, 18944, 28, 28, 4, False, [16, 24, 24]),
           "vision": {**_VISION, "out_hidden_size": 3584}, "ids": _IDS, "tie": False},
    # NOTES.md §3: text 64 wide, 2 layers, 4 heads, 2 KV heads; vision 2 deep, 32 wide
    "tiny": {"text": _text(1100, 64, 128, 2, 4, 2, False, [2, 3, 3], (1000, 1001), 4096),
             "vision": {**_VISION, "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                        "fullatt_block_indexes": [1], "out_hidden_size": 64},
             "ids": {"image_token_id": 1010, "video_token_id": 1011, "vision_start_token_id": 1012,
                     "vision_end_token_id": 1013}, "tie": False},
}
PAPER = {"sft_batch": 4, "sft_accum": 4, "sft_lr": 1e-5, "grpo_generations": 8, "grpo_batch": 8,
         "grpo_completion": 512, "grpo_beta": 0.04, "grpo_lr": 1e-6, "temperature": 1.0}
"""Batch settings of examples/configs/paper.yaml (policy.sft and policy.grpo)."""


@dataclass
class Row:
    check: str
    model: str
    setting: str
    time: str = ""
    memory: str = ""
    figure: str = ""
    status: str = "ok"  # ok | oom | not installed | skipped | error


@dataclass
class Env:
    torch: Any
    device: str
    dtype: Any
    tiny: bool
    args: argparse.Namespace
    rows: list[Row] = field(default_factory=list)
    grpo_step_s: dict[str, float] = field(default_factory=dict)

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def peak(self) -> str:
        if self.device == "cuda":
            return f"{self.torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        return f"RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"

    def free(self) -> None:
        gc.collect()
        if self.device == "cuda":
            self.torch.cuda.empty_cache()


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_model(env: Env, size: str, ids: dict[str, int] | None = None) -> Any:
    """``Qwen2_5_VLForConditionalGeneration`` with random weights from ``CONFIGS[size]``, on the device."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    spec = CONFIGS[size]
    config = Qwen2_5_VLConfig(text_config=dict(spec["text"]), vision_config=dict(spec["vision"]),
                              **(ids or spec["ids"]), tie_word_embeddings=spec["tie"])
    env.torch.manual_seed(0)
    with env.torch.device(env.device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=env.dtype)
    return model


def synthetic_batch(env: Env, size: str, batch: int, text_tokens: int) -> dict[str, Any]:
    """Input ids of ``[vision_start, image_pad × n, vision_end, text …]`` with pixel values and grid."""
    torch = env.torch
    spec = CONFIGS[size]
    ids, vis = spec["ids"], spec["vision"]
    grid = env.args.image_side // vis["patch_size"]
    n_img = grid * grid // vis["spatial_merge_size"] ** 2
    g = torch.Generator().manual_seed(batch * 1000 + text_tokens)
    text = torch.randint(0, min(spec["text"]["vocab_size"], 150000) - 200, (batch, text_tokens), generator=g)
    input_ids = torch.cat([torch.full((batch, 1), ids["vision_start_token_id"]),
                           torch.full((batch, n_img), ids["image_token_id"]),
                           torch.full((batch, 1), ids["vision_end_token_id"]), text], dim=1)
    patch = 3 * vis["temporal_patch_size"] * vis["patch_size"] ** 2
    pixels = torch.randn(batch * grid * grid, patch, generator=g)
    labels = input_ids.clone()
    labels[:, : n_img + 2] = -100
    out = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels,
           "pixel_values": pixels.to(env.dtype), "image_grid_thw": torch.tensor([[1, grid, grid]] * batch)}
    return {k: v.to(env.device) for k, v in out.items()}


def optimizer(env: Env, model: Any, lr: float) -> Any:
    params = [p for p in model.parameters() if p.requires_grad]
    return env.torch.optim.AdamW(params, lr=lr, fused=env.device == "cuda")


def sft_row(env: Env, size: str) -> Row:
    b, accum = PAPER["sft_batch"], PAPER["sft_accum"]
    batch = synthetic_batch(env, size, b, env.args.sft_text)
    seq = batch["input_ids"].shape[1]
    row = Row("SFT step", size, f"{b}x{accum} accum, seq {seq}, gc, {env.args.dtype_name}")
    model = build_model(env, size)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()
    opt = optimizer(env, model, PAPER["sft_lr"])
    env.reset_peak()
    times = []
    try:
        for _ in range(1 + env.args.steps):  # the first step warms up (and allocates the optimizer state)
            env.sync()
            t = time.perf_counter()
            for _ in range(accum):
                (model(**batch).loss / accum).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            env.sync()
            times.append(time.perf_counter() - t)
        step = statistics.median(times[1:])
        row.time = f"{step:.3f} s/step"
        row.memory = env.peak()
        row.figure = f"{b * accum * seq / step:,.0f} tok/s"
    finally:
        del model, opt, batch
        env.free()
    return row


def completion_logprobs(model: Any, seqs: Any, inputs: dict[str, Any], n_new: int) -> Any:
    """Per-token log-probabilities of the last ``n_new`` tokens of ``seqs`` (logits of those only)."""
    out = model(input_ids=seqs, attention_mask=env_ones(seqs), pixel_values=inputs["pixel_values"],
                image_grid_thw=inputs["image_grid_thw"], logits_to_keep=n_new + 1)
    logits = out.logits[:, :-1].float()
    return logits.log_softmax(-1).gather(-1, seqs[:, -n_new:].unsqueeze(-1)).squeeze(-1)


def env_ones(x: Any) -> Any:
    return x.new_ones(x.shape)


def grpo_rows(env: Env, size: str) -> list[Row]:
    """Generate G completions of one prompt, then the GRPO loss step (β > 0: a reference model)."""
    torch = env.torch
    g_n, new = PAPER["grpo_generations"], env.args.completion
    inputs = synthetic_batch(env, size, g_n, env.args.prompt_text)  # one prompt, repeated per generation
    prompt_len = inputs["input_ids"].shape[1]
    gen_row = Row("GRPO generate", size, f"1 prompt x G={g_n}, {prompt_len}+{new} tok, HF generate")
    loss_row = Row("GRPO loss step", size, f"{g_n} x {prompt_len + new} tok, beta={PAPER['grpo_beta']}, gc")
    model = build_model(env, size)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    opt = optimizer(env, model, PAPER["grpo_lr"])
    pad = CONFIGS[size]["text"]["pad_token_id"]
    gen_kw = {"attention_mask": inputs["attention_mask"], "pixel_values": inputs["pixel_values"],
              "image_grid_thw": inputs["image_grid_thw"], "do_sample": True,
              "temperature": PAPER["temperature"],
              "use_cache": True, "eos_token_id": None, "pad_token_id": pad}
    try:
        model.eval()
        with torch.no_grad():
            model.generate(inputs["input_ids"], max_new_tokens=4, min_new_tokens=4, **gen_kw)  # warm-up
            env.reset_peak()
            env.sync()
            t = time.perf_counter()
            seqs = model.generate(inputs["input_ids"], max_new_tokens=new, min_new_tokens=new, **gen_kw)
            env.sync()
        gen_s = time.perf_counter() - t
        gen_row.time, gen_row.memory = f"{gen_s:.2f} s", env.peak()
        gen_row.figure = f"{g_n * new / gen_s:,.0f} tok/s"
        model.train()
        rewards = torch.linspace(-6, 10, g_n, device=env.device)
        adv = ((rewards - rewards.mean()) / (rewards.std() + 1e-4)).unsqueeze(1)
        times = []
        env.reset_peak()
        try:
            for _ in range(1 + env.args.steps):
                env.sync()
                t = time.perf_counter()
                with torch.no_grad():
                    ref_lp = completion_logprobs(ref, seqs, inputs, new)
                lp = completion_logprobs(model, seqs, inputs, new)
                ratio = torch.exp(lp - lp.detach())  # one iteration per batch: old = current
                kl = torch.exp(ref_lp - lp) - (ref_lp - lp) - 1
                loss = (-(ratio * adv) + PAPER["grpo_beta"] * kl).mean()
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                env.sync()
                times.append(time.perf_counter() - t)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one; keep the generate row
            if "out of memory" not in str(exc).lower():
                raise
            loss_row.status, loss_row.figure = "oom", oom_text(env)
            return [gen_row, loss_row]
        step = statistics.median(times[1:])
        loss_row.time, loss_row.memory = f"{step:.3f} s/step", env.peak()
        loss_row.figure = f"step total {gen_s + step:.2f} s"
        env.grpo_step_s[size] = gen_s + step
    finally:
        del model, ref, opt, inputs
        env.free()
    return [gen_row, loss_row]


VLLM_SCRIPT = r"""
import json, sys, time
cfg_dir, n_prompts, g, new, prompt_len = sys.argv[1], *map(int, sys.argv[2:6])
from vllm import LLM, SamplingParams
llm = LLM(model=cfg_dir, load_format="dummy", skip_tokenizer_init=True, dtype="bfloat16", enforce_eager=True,
          gpu_memory_utilization=0.6, max_model_len=prompt_len + new + 16, limit_mm_per_prompt={"image": 0})
params = SamplingParams(n=g, max_tokens=new, ignore_eos=True, temperature=1.0, detokenize=False)
prompts = [{"prompt_token_ids": [(7 * i + j) % 150000 for j in range(prompt_len)]} for i in range(n_prompts)]
llm.generate(prompts[:1], SamplingParams(max_tokens=4, detokenize=False))
t = time.perf_counter()
outs = llm.generate(prompts, params)
dt = time.perf_counter() - t
print(json.dumps({"s": dt, "tokens": sum(len(c.token_ids) for o in outs for c in o.outputs)}))
"""


def vllm_row(env: Env, size: str) -> Row:
    g_n, new, n_prompts = PAPER["grpo_generations"], env.args.completion, 8
    row = Row("vLLM rollouts", size, f"{n_prompts} prompts x G={g_n}, {new} tok, dummy weights")
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure to import means no vLLM here
        row.status, row.figure = "not installed", f"vLLM not importable ({type(exc).__name__})"
        return row
    if env.device != "cuda":
        row.status, row.figure = "skipped", "vLLM needs CUDA"
        return row
    from transformers import Qwen2_5_VLConfig

    spec = CONFIGS[size]
    with tempfile.TemporaryDirectory() as tmp:
        # A tokenizer and image processor beside the config, in case vLLM loads them (the prompts go
        # in as token ids); the config's special ids are the tokenizer's.
        tok, improc, ids = tiny_processor_parts(448)
        tok.save_pretrained(tmp)
        improc.save_pretrained(tmp)
        config = Qwen2_5_VLConfig(text_config=dict(spec["text"]), vision_config=dict(spec["vision"]),
                                  **ids, tie_word_embeddings=spec["tie"])
        config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
        config.save_pretrained(tmp)
        prompt_len = env.args.prompt_text + 64
        cmd = [sys.executable, "-c", VLLM_SCRIPT, tmp, str(n_prompts), str(g_n), str(new), str(prompt_len)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=env.args.vllm_timeout)
    if proc.returncode != 0:
        row.status = "error"
        row.figure = (proc.stderr.strip().splitlines() or ["no output"])[-1][:120]
        return row
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    row.time = f"{res['s']:.2f} s"
    row.figure = f"{res['tokens'] / res['s']:,.0f} tok/s (text-only prompts)"
    return row


def tiny_processor_parts(side: int) -> tuple[Any, Any, dict[str, int]]:
    """A byte-level tokenizer trained here (medgr2_hf.tiny), a Qwen2-VL image processor giving
    ``side``² pixel images, and the special token ids a config must use with that tokenizer."""
    from medgr2_hf.tiny import QWEN_SPECIALS, chat_template, train_tokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    template = chat_template("<|vision_start|><|image_pad|><|vision_end|>")
    tok = train_tokenizer(None, QWEN_SPECIALS, 1000, template)
    ids = {"image_token_id": tok.convert_tokens_to_ids("<|image_pad|>"),
           "video_token_id": tok.convert_tokens_to_ids("<|video_pad|>"),
           "vision_start_token_id": tok.convert_tokens_to_ids("<|vision_start|>"),
           "vision_end_token_id": tok.convert_tokens_to_ids("<|vision_end|>")}
    improc = Qwen2VLImageProcessorPil(size={"shortest_edge": side * side, "longest_edge": side * side},
                                      patch_size=14, merge_size=2, temporal_patch_size=2)
    return tok, improc, ids


def reward_rows(env: Env, size: str) -> list[Row]:
    """The VLM R_φ (real VLMBackbone/VLMRewardModel code) at batch 1 vs 32, float32 and bf16."""
    from medgr2_hf.processors import Qwen2_5_VLImageProcessor
    from medgr2_reward.backbones import VLMBackbone
    from medgr2_reward.model import VLMRewardModel
    from medgr2_reward.options import VLMRewardOptions
    from PIL import Image

    from medgr2.data import ImageRef, RewardInput

    torch = env.torch
    side = env.args.image_side
    tok, improc, ids = tiny_processor_parts(side)
    processor = Qwen2_5_VLImageProcessor(image_processor=improc, tokenizer=tok,
                                         chat_template=tok.chat_template)
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-rphi-"))
    inputs = []
    for i in range(env.args.reward_n):
        Image.new("RGB", (side, side), ((i * 37) % 256, 90, 160)).save(tmp / f"{i}.png")
        words = " ".join(["opacity in the left lower lobe"] * (1 + i % 6))
        inputs.append(RewardInput(question=f"Case {i}: which finding does this chest X-ray show?",
                                  answer=f"B. pneumonia: {words}",
                                  rationale="Consolidation with air bronchograms.",
                                  image=ImageRef(path=f"{i}.png", root=str(tmp))))
    rows = []
    dtypes = [("float32", torch.float32), ("bf16", torch.bfloat16)]
    for name, dtype in dtypes:
        row = Row("R_phi scoring", size, f"{len(inputs)} inputs, batch 1 vs 32, {name}, {side}px")
        model = build_model(env, size, ids).to(dtype)
        try:
            backbone = VLMBackbone.__new__(VLMBackbone)  # the real class, with the in-memory model
            backbone.full, backbone.processor, backbone.module = model, processor, model.model
            backbone.max_length, backbone.device = 1024, env.device
            backbone.hidden_size = int(model.config.text_config.hidden_size)
            rm = VLMRewardModel(VLMRewardOptions(model_path="(in memory)", device=env.device))
            rm._backbone, rm.version = backbone, "gpu-check"
            rm._net = rm._make_net()
            rm.options = rm.options.model_copy(update={"score_batch_size": 32})
            rm.score(inputs[:4])  # warm-up
            env.reset_peak()
            rates, scores = [], []
            for bs in (1, 32):
                rm.options = rm.options.model_copy(update={"score_batch_size": bs})
                env.sync()
                t = time.perf_counter()
                scores.append(rm.score(inputs))
                env.sync()
                rates.append(len(inputs) / (time.perf_counter() - t))
            diff = max(abs(a - b) for a, b in zip(*scores))
            row.time = f"{rates[0]:.4g}/s vs {rates[1]:.4g}/s"
            row.memory = env.peak()
            row.figure = f"speed-up {rates[1] / rates[0]:.2f}x, max diff {diff:.1e}"
        finally:
            del model
            env.free()
        rows.append(row)
    return rows


def overhead_rows(env: Env) -> list[Row]:
    """medgr2's grpo trainer vs a bare GRPOTrainer (tiny model, this device), and the reward layer's
    extra cost as a share of the paper-scale GRPO step measured above."""
    from bench_train_grpo_overhead import (
        LengthRewardModel,
        grpo_kwargs,
        make_samples,
        reward_layer_cost,
        run_medgr2,
        step_timer,
    )
    from medgr2_hf.tiny import build_tiny_vlm

    from medgr2.interfaces import StageContext
    from medgr2.plugins import load_registry

    gpu = env.device == "cuda"
    targs = argparse.Namespace(steps=env.args.overhead_steps, threads=1)
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-grpo-"))
    model_path = build_tiny_vlm("qwen2_5_vl", tmp / "model", seed=0)
    samples = make_samples(tmp / "images", 16)
    context = StageContext(work_dir=tmp / "work", registry=load_registry(), reward_model=LengthRewardModel())

    def run_bare(out: Path) -> Any:
        import functools

        from datasets import Dataset
        from medgr2_hf.vlm import load_processor
        from medgr2_trl.grpo import grpo_rows as rows_of
        from medgr2_trl.rewards import answer_match, reward_model
        from transformers import AutoModelForImageTextToText
        from transformers.trainer_callback import PrinterCallback
        from trl import GRPOConfig, GRPOTrainer

        model = AutoModelForImageTextToText.from_pretrained(
            model_path, dtype=env.torch.bfloat16 if gpu else env.torch.float32)
        rm = functools.partial(reward_model, model=context.reward_model)
        rm.__name__ = "reward_model"  # type: ignore[attr-defined]
        config = GRPOConfig(output_dir=str(out), use_cpu=not gpu, bf16=gpu, activation_checkpointing=gpu,
                            report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
                            reward_weights=[0.8, 0.2], remove_unused_columns=False, **grpo_kwargs(targs, 0))
        timer = step_timer()
        trainer = GRPOTrainer(model=model, reward_funcs=[rm, answer_match], args=config,
                              train_dataset=Dataset.from_list(rows_of(samples, "text", context)),
                              processing_class=load_processor(model_path), callbacks=[timer])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        return timer

    if not gpu:
        env.torch.set_num_threads(1)
    bare = run_bare(tmp / "bare").times[1:]
    ours = run_medgr2(targs, model_path, samples, context, tmp / "medgr2").times[1:]
    b, m = statistics.median(bare), statistics.median(ours)
    rows = [Row("loop overhead", "tiny", f"GRPO, {len(bare)} steps each, medgr2 vs bare TRL",
                time=f"{m:.3f} vs {b:.3f} s/step",
                figure=f"overhead {100 * (m / b - 1):+.1f} % (goal <= 5 %)")]
    rb, rm = reward_layer_cost(context, samples, n=50)
    for size, step in env.grpo_step_s.items():
        rows.append(Row("loop overhead", size, "reward terms + monitors per step / GRPO step",
                        time=f"+{1e3 * (rm - rb):.2f} ms",
                        figure=f"{100 * (rm - rb) / step:.3f} % of the step"))
    return rows


def oom_text(env: Env) -> str:
    total = env.torch.cuda.get_device_properties(0).total_memory / 2**30 if env.device == "cuda" else 0
    return f"out of memory on {total:.0f} GiB" if total else "out of memory"


def attempt(env: Env, label: str, fn: Any, *a: Any) -> None:
    """Run one section; an out-of-memory or other failure becomes a row instead of ending the run."""
    log(f"{label} ...")
    t = time.perf_counter()
    try:
        out = fn(env, *a)
        env.rows += out if isinstance(out, list) else [out]
    except Exception as exc:  # noqa: BLE001 - reported in the table
        oom = "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
        if oom and env.device == "cuda":
            detail = oom_text(env)
        else:
            traceback.print_exc()
        env.rows.append(Row(label, "/".join(str(x) for x in a) or "-", "", status="oom" if oom else "error",
                            figure=detail))
    env.free()  # out here, once the exception (and the frames holding the models) is gone
    log(f"{label} done in {time.perf_counter() - t:.1f} s")


def print_table(env: Env, started: float) -> None:
    torch = env.torch
    card = torch.cuda.get_device_name(0) if env.device == "cuda" else "CPU (tiny configs)"
    print(f"\nGPU check on {card}; torch {torch.__version__}, {env.args.dtype_name}; "
          f"total {time.perf_counter() - started:.0f} s")
    head = ("check", "model", "setting", "time", "peak memory", "figure", "status")
    cells = [head] + [(r.check, r.model, r.setting, r.time, r.memory, r.figure, r.status) for r in env.rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for n, c in enumerate(cells):
        print("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


SECTIONS = {"sft", "grpo", "vllm", "reward", "overhead"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-tiny", action="store_true", help="tiny configs on CPU (automatic without CUDA)")
    p.add_argument("--sizes", default="3b,7b", help="real configs to run on CUDA (comma-separated)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed optimizer steps per row (after one warm-up)")
    p.add_argument("--skip", default="", help="sections to skip: sft,grpo,vllm,reward,overhead")
    p.add_argument("--vllm-timeout", type=int, default=180, help="seconds for the vLLM subprocess")
    args = p.parse_args(argv)
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in ("3b", "7b")]
    if unknown or not sizes:
        p.error(f"unknown size(s) {unknown or args.sizes!r} in --sizes: give 3b, 7b or 3b,7b")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - SECTIONS:
        p.error(f"unknown section(s) {sorted(skip - SECTIONS)} in --skip: "
                f"choose from {', '.join(sorted(SECTIONS))}")
    started = time.perf_counter()
    import torch

    cuda = torch.cuda.is_available() and not args.cpu_tiny
    if not cuda and not args.cpu_tiny:
        log("no CUDA device: running the --cpu-tiny fallback")
    tiny = not cuda
    sizes = ["tiny"] if tiny else sizes
    for name, big, small in (("steps", 2, 1), ("image_side", 448, 56), ("sft_text", 256, 24),
                             ("prompt_text", 64, 12), ("completion", PAPER["grpo_completion"], 8),
                             ("reward_n", 64, 12), ("overhead_steps", 8, 3)):
        if getattr(args, name, None) is None:
            setattr(args, name, small if tiny else big)
    args.dtype_name = "float32" if tiny else "bf16"
    env = Env(torch, "cuda" if cuda else "cpu", torch.float32 if tiny else torch.bfloat16, tiny, args)
    first = sizes[0]
    for size in sizes:
        if "sft" not in skip:
            attempt(env, "SFT step", sft_row, size)
        if "grpo" not in skip:
            attempt(env, "GRPO step", grpo_rows, size)
        if size == first:
            if "vllm" not in skip:
                attempt(env, "vLLM rollouts", vllm_row, size)
            if "reward" not in skip:
                attempt(env, "R_phi scoring", reward_rows, size if not tiny else "tiny")
    if "overhead" not in skip:
        attempt(env, "loop overhead", overhead_rows)
    print_table(env, started)
    failed = [r for r in env.rows if r.status == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
