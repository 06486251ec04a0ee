"""The sft trainer on tiny models: the loss falls, the model saves and reloads, LoRA merges."""

from __future__ import annotations

import json

import pytest
from medgr2_trl.options import LoraOptions, SFTOptions
from medgr2_trl.sft import SFTPolicyTrainer, sft_rows, sft_target

from medgr2.answers import extract


def test_sft_lowers_the_loss_and_saves_a_loadable_model(tiny_qwen, samples, train_context, tmp_path):
    opts = SFTOptions(max_steps=10, per_device_train_batch_size=8, save_steps=5, num_threads=1,
                      learning_rate=3e-3, warmup_ratio=0.0)
    out = tmp_path / "sft"
    result = SFTPolicyTrainer(opts).train(samples, tiny_qwen, out, train_context)
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert len(losses) == 10
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:2]) / 2, losses
    assert result.metrics["global_step"] == 10
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in lines if "loss" in json.loads(x)] == losses
    from medgr2_hf.vlm import generate, load_vlm

    from medgr2.images import open_image

    model, processor = load_vlm(result.checkpoint)
    image = open_image(samples[0].images[0], train_context.registry)
    text = generate(model, processor, [image], ["What does this chest X-ray show?"], max_new_tokens=8)
    assert isinstance(text[0], str)


def test_sft_targets_follow_the_answer_format(samples):
    sample = samples[0]
    assert sft_target(sample, "text", False) == f"{sample.answer} ({sample.answer_letter})"
    with_rationale = sft_target(sample, "text", True)
    assert with_rationale.startswith(sample.rationale) and extract(with_rationale, sample.options) == sample.answer_letter
    assert sft_target(sample, "think", True).startswith(f"<think>{sample.rationale}</think>")
    assert sft_target(sample, "letter", False) == sample.answer_letter


def test_sft_rows_carry_images_and_the_prompt(samples, train_context):
    rows = sft_rows(samples[:2], "text", False, train_context)
    assert rows[0]["images"][0].size == (64, 64) and rows[0]["images"][0].mode == "RGB"
    assert "A. " in rows[0]["prompt"][0]["content"] and rows[0]["completion"][0]["role"] == "assistant"


def test_sft_on_llava_with_lora_merges_into_the_saved_model(tiny_llava, samples, train_context, tmp_path):
    opts = SFTOptions(max_steps=2, per_device_train_batch_size=4, num_threads=1, lora=LoraOptions(r=4, alpha=8))
    result = SFTPolicyTrainer(opts).train(samples[:4], tiny_llava, tmp_path / "lora", train_context)
    files = {p.name for p in (tmp_path / "lora" / "final").iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
    from medgr2_hf.vlm import load_vlm

    model, _ = load_vlm(result.checkpoint)
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_sft_refuses_empty_data(tiny_qwen, train_context, tmp_path):
    with pytest.raises(ValueError, match="no samples"):
        SFTPolicyTrainer().train([], tiny_qwen, tmp_path / "x", train_context)


@pytest.mark.parametrize("gpu", [False, True])
def test_device_aware_defaults(gpu, monkeypatch, train_context):
    import torch
    from medgr2_trl import training

    monkeypatch.setattr(training, "on_gpu", lambda: gpu)
    tiny, big = torch.nn.Linear(10, 10), torch.nn.Linear(4000, 4000)
    got = training.training_defaults(SFTOptions(), train_context, tiny)
    assert got["use_cpu"] is (not gpu) and got["bf16"] is gpu and got["activation_checkpointing"] is gpu
    assert got["report_to"] == "none" and got["learning_rate"] == 2e-3
    assert training.training_defaults(SFTOptions(), train_context, big)["learning_rate"] == 1e-5
    forced = training.training_defaults(SFTOptions(bf16=False, gradient_checkpointing=False, learning_rate=1e-4,
                                                 report_to="tensorboard"), train_context, tiny)
    assert not forced["bf16"] and not forced["activation_checkpointing"]
    assert forced["learning_rate"] == 1e-4 and forced["report_to"] == ["tensorboard"]
