"""Tiny offline VLMs: deterministic, reloadable offline with a real processor, runnable."""

from __future__ import annotations

import hashlib

import pytest
from medgr2_hf.tiny import build_tiny_vlm
from medgr2_hf.vlm import ProcessorError, generate, load_vlm, score_options


def _digest(path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_qwen_processor_is_real_and_image_only(tiny_qwen):
    from transformers.processing_utils import ProcessorMixin

    from medgr2_hf.vlm import load_processor

    processor = load_processor(tiny_qwen)  # stock AutoProcessor loading: tests/hf/test_hf_policy_folder.py
    assert isinstance(processor, ProcessorMixin), type(processor)
    assert type(processor).__name__ == "Qwen2_5_VLImageProcessor"
    assert processor.image_processor is not None
    assert processor.tokenizer.padding_side == "left"


@pytest.mark.parametrize("fixture", ["tiny_qwen", "tiny_llava"])
def test_tiny_vlm_loads_and_generates_with_images(fixture, request):
    from PIL import Image

    model, processor = load_vlm(request.getfixturevalue(fixture))
    red, blue = Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue")
    texts = ["What does this show? A. pneumonia B. normal", "Which modality?"]
    out = generate(model, processor, [red, blue], texts, max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    image_id = model.config.image_token_id
    from medgr2_hf.vlm import build_inputs

    batch = build_inputs(processor, [red], texts[:1])
    assert int((batch["input_ids"] == image_id).sum()) > 0, "image tokens were dropped"
    scores = score_options(model, processor, red, texts[0], ["pneumonia (A)", "normal (B)"])
    assert len(scores) == 2 and all(s < 0 for s in scores)


def test_build_is_deterministic_and_seeded(tmp_path):
    a = build_tiny_vlm("qwen2_5_vl", tmp_path / "a", seed=1)
    b = build_tiny_vlm("qwen2_5_vl", tmp_path / "b", seed=1)
    c = build_tiny_vlm("qwen2_5_vl", tmp_path / "c", seed=2)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny architecture"):
        build_tiny_vlm("gpt", tmp_path / "x")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        load_vlm(tmp_path)


def test_folder_without_processor_is_refused(tiny_qwen, tmp_path):
    import shutil

    folder = tmp_path / "no_processor"
    shutil.copytree(tiny_qwen, folder)
    (folder / "processor_config.json").unlink()
    with pytest.raises(ProcessorError, match="processor"):
        load_vlm(folder)


def test_cli_models_tiny(tmp_path):
    from medgr2.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["models", "tiny", "--arch", "llava", "--out", str(tmp_path / "m"), "--seed", "3"])
    assert exc.value.code in (0, None)
    assert (tmp_path / "m" / "model.safetensors").is_file()
