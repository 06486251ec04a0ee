"""A trained policy folder loads the standard way (stock transformers, nothing from medgr2) and has a real card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

# Runs in a fresh interpreter: stock transformers only. Prints one JSON line.
STOCK_LOADER = r'''
import importlib.util, json, sys
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.processing_utils import ProcessorMixin

folder = sys.argv[1]
report = {"torchvision": importlib.util.find_spec("torchvision") is not None}
try:  # without the flag: the stock processor where torchvision exists, else a loud error
    plain = AutoProcessor.from_pretrained(folder)
    report["plain"] = type(plain).__name__
    report["plain_has_image_processor"] = getattr(plain, "image_processor", None) is not None
except Exception as exc:
    report["plain"] = "error"
    report["plain_error"] = f"{type(exc).__name__}: {exc}"
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForImageTextToText.from_pretrained(folder).eval()
report["processor"] = type(processor).__name__
report["is_processor"] = isinstance(processor, ProcessorMixin)
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": sys.argv[2]}]}]
text = processor.apply_chat_template(messages, add_generation_prompt=True)
logits, answers = [], []
for colour in ((200, 40, 40), (40, 40, 200)):
    inputs = processor(text=[text], images=[Image.new("RGB", (64, 64), colour)], return_tensors="pt")
    with torch.inference_mode():
        logits.append(model(**inputs).logits[0, -1])
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answers.append(processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0])
report["pixel_values"] = list(inputs["pixel_values"].shape)
report["image_tokens"] = int((inputs["input_ids"] == model.config.image_token_id).sum())
report["new_tokens"] = int(out.shape[1] - inputs["input_ids"].shape[1])
report["answers"] = answers
report["image_changes_logits"] = float((logits[0] - logits[1]).abs().max())
report["medgr2_modules"] = sorted(m for m in sys.modules if m.startswith("medgr2"))
print(json.dumps(report))
'''


@pytest.fixture(scope="module")
def trained_policy(tmp_path_factory):
    """A tiny Qwen2.5-VL trained with the ``sft`` trainer for a few steps."""
    from medgr2_hf.tiny import build_tiny_vlm
    from medgr2_trl.options import SFTOptions
    from medgr2_trl.sft import SFTPolicyTrainer

    from medgr2.interfaces import StageContext
    from medgr2.plugins import load_registry
    from tests.hf.conftest import make_samples

    root = tmp_path_factory.mktemp("policy")
    base = build_tiny_vlm("qwen2_5_vl", root / "base", seed=0)
    samples = make_samples(root / "images")
    context = StageContext(work_dir=root / "work", seed=0, registry=load_registry())
    opts = SFTOptions(max_steps=6, per_device_train_batch_size=8, num_threads=1, learning_rate=3e-3,
                      warmup_ratio=0.0, save_steps=100)
    result = SFTPolicyTrainer(opts).train(samples, base, root / "sft", context)
    return result, samples, base, root / "sft"


def test_trained_policy_loads_with_stock_transformers_and_uses_the_image(trained_policy, tmp_path):
    result, samples, _, _ = trained_policy
    folder = result.checkpoint
    config = json.loads(Path(folder, "processor_config.json").read_text(encoding="utf-8"))
    assert config["processor_class"] == "Qwen2_5_VLProcessor"
    assert config["auto_map"]["AutoProcessor"] == "processing_medgr2.Qwen2_5_VLImageProcessor"
    assert os.path.isfile(os.path.join(folder, "processing_medgr2.py"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    proc = subprocess.run([sys.executable, "-c", STOCK_LOADER, folder, samples[0].question], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["medgr2_modules"] == []
    assert report["is_processor"] and report["processor"] == "Qwen2_5_VLImageProcessor"
    # a 64x64 image: 4x4 patches of 14 px, merged 2x2 -> 16 patch rows and 4 image tokens
    assert report["pixel_values"][0] == 16 and report["image_tokens"] == 4
    assert report["image_changes_logits"] > 0, "the image does not reach the model"
    assert report["new_tokens"] >= 1 and all(isinstance(a, str) for a in report["answers"])
    if report["torchvision"]:
        assert report["plain"] == "Qwen2_5_VLProcessor" and report["plain_has_image_processor"]
    else:  # never a bare tokenizer that silently drops the image
        assert report["plain"] == "error" and "Torchvision" in report["plain_error"], report


def test_policy_card_names_base_model_data_metrics_and_format(trained_policy):
    result, samples, base, out_dir = trained_policy
    card = Path(result.checkpoint, "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: image-text-to-text")
    assert "fine-tuned version of [None]" not in card
    assert str(base) in card
    assert f"{len(samples)} multiple-choice VQA samples" in card and "| PneumoniaMNIST | 8 |" in card
    assert "CC BY 4.0" in card  # the images' licence
    assert "| train_loss |" in card and "| global_step | 6 |" in card
    assert "`text`" in card and "pneumonia (A)" in card  # the answer format with an example target
    assert "AutoProcessor.from_pretrained(folder, trust_remote_code=True)" in card
    # TRL's stub in the trainer's output folder is replaced too
    assert (out_dir / "README.md").read_text(encoding="utf-8") == card


def test_medgr2_loader_never_runs_the_folders_code_and_gets_the_image_processor(trained_policy):
    from medgr2_hf.processing_medgr2 import Qwen2_5_VLImageProcessor
    from medgr2_hf.vlm import load_processor

    processor = load_processor(trained_policy[0].checkpoint)
    assert type(processor) is Qwen2_5_VLImageProcessor and processor.image_processor is not None


def test_reward_card_from_a_saved_reward_model(tmp_path):
    from medgr2_hf.cards import write_reward_card

    folder = tmp_path / "v001"
    with pytest.raises(FileNotFoundError, match="reward_model.json"):
        write_reward_card(folder)
    folder.mkdir()
    (folder / "reward_model.json").write_text(json.dumps(
        {"kind": "minilm", "version": "minilm-v001-abcd", "parent_version": None, "backbone": "backbone",
         "options": {"lr": 2e-4}, "saved_at": "2026-12-06T00:00:00"}))
    (folder / "calibration.json").write_text(json.dumps({"spearman": 0.91, "mse": 2.5, "version": "x"}))
    card = write_reward_card(folder, examples=120).read_text(encoding="utf-8")
    assert "minilm-v001-abcd" in card and "| spearman | 0.91 |" in card and "| training examples | 120 |" in card
    assert "medgr2.load_reward_model(" in card
