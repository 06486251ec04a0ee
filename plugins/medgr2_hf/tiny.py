"""Deterministic tiny vision-language models built offline (random weights).

:func:`build_tiny_vlm` writes a complete model folder (config, safetensors weights, tokenizer,
image processor, processor and chat template) that reloads with ``HF_HUB_OFFLINE=1`` through
:func:`medgr2_hf.vlm.load_vlm` or the usual ``Auto*`` classes. Two architectures:

* ``qwen2_5_vl``: Qwen2.5-VL with a 2-layer text model and a 2-block vision tower; a 64×64 image
  becomes 4 image tokens. Its processor is :class:`medgr2_hf.processors.Qwen2_5_VLImageProcessor`.
* ``llava``: a CLIP vision tower + Qwen2 text model with the standard LLaVA processor.

The tokenizer is a byte-level BPE trained locally with ``tokenizers`` (on ``texts`` when given,
else on a small built-in medical corpus); any text tokenizes, as every byte is in the alphabet.
Padding is on the left, as batched generation and GRPO need.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

Arch = Literal["qwen2_5_vl", "llava"]
Size = Literal["tiny", "small"]

ARCHS: tuple[str, ...] = ("qwen2_5_vl", "llava")
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "vision_hidden": 32, "vision_layers": 2,
             "vocab": 1024},
    "small": {"hidden": 256, "layers": 4, "heads": 8, "kv_heads": 4, "vision_hidden": 64, "vision_layers": 2,
              "vocab": 4096},
}
"""Model sizes: ``tiny`` (~0.2M parameters) and ``small`` (~4M)."""

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>")
LLAVA_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>")

_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}IMAGE_PLACEHOLDER"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = (
    "What is the imaging modality of this image? Which organ is shown? What is the most likely diagnosis?",
    "Options: A. CT B. MRI C. X-ray D. ultrasound E. dermoscopy F. fundus photography G. OCT H. microscopy",
    "pneumonia normal benign malignant melanoma nevus keratosis carcinoma lesion tumor adenocarcinoma",
    "chest lung liver kidney brain heart breast skin retina abdomen spine colon stomach pelvis bone",
    "The answer is (A). Answer: B. <think>The image shows an opacity in the lower lobe.</think><answer>C</answer>",
    "Please choose one of the following options. You must pick only one answer. grade mild moderate severe",
)


def chat_template(image_text: str) -> str:
    """A ChatML chat template rendering image parts as ``image_text``."""
    return _CHAT_TEMPLATE.replace("IMAGE_PLACEHOLDER", image_text)


def train_tokenizer(texts: Iterable[str] | None, specials: tuple[str, ...], vocab_size: int,
                    template: str):
    """Train a byte-level BPE on ``texts`` and wrap it as a ``Qwen2Tokenizer`` (left padding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    corpus = list(texts) if texts is not None else []
    corpus += list(_CORPUS)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, unk_token=None, eos_token="<|endoftext|>",
                         pad_token="<|endoftext|>", bos_token=None, padding_side="left")
    tok.add_tokens(list(specials), special_tokens=True)
    tok.eos_token = "<|im_end|>"  # chat turns end with it: SFT teaches it, generation stops on it
    tok.chat_template = template
    return tok


def _text_config(size: dict[str, int], vocab: int, eos: int, pad: int) -> dict:
    hidden, heads = size["hidden"], size["heads"]
    return {"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": hidden * 2,
            "num_hidden_layers": size["layers"], "num_attention_heads": heads,
            "num_key_value_heads": size["kv_heads"], "max_position_embeddings": 2048,
            "bos_token_id": None, "eos_token_id": eos, "pad_token_id": pad, "tie_word_embeddings": False}


def _mrope_section(head_dim: int) -> list[int]:
    half = head_dim // 2
    first = half // 4
    rest = half - first
    return [first, rest // 2, rest - rest // 2]


def _build_qwen(size: dict[str, int], tok):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from medgr2_hf.processors import Qwen2_5_VLImageProcessor

    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = _text_config(size, len(tok), ids["<|im_end|>"], ids["<|endoftext|>"])
    head_dim = size["hidden"] // size["heads"]
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                               "mrope_section": _mrope_section(head_dim)}
    vision = {"depth": size["vision_layers"], "hidden_size": size["vision_hidden"],
              "intermediate_size": size["vision_hidden"] * 2, "num_heads": 2, "out_hidden_size": size["hidden"],
              "fullatt_block_indexes": [size["vision_layers"] - 1], "window_size": 112, "patch_size": 14,
              "spatial_merge_size": 2, "temporal_patch_size": 2}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    model = Qwen2_5_VLForConditionalGeneration(config)
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": 56 * 56, "longest_edge": 112 * 112}, patch_size=14, merge_size=2,
        temporal_patch_size=2)
    processor = Qwen2_5_VLImageProcessor(image_processor=image_processor, tokenizer=tok,
                                         chat_template=tok.chat_template)
    return model, processor


def _build_llava(size: dict[str, int], tok):
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    image_id = tok.convert_tokens_to_ids("<image>")
    text = _text_config(size, len(tok), tok.convert_tokens_to_ids("<|im_end|>"),
                        tok.convert_tokens_to_ids("<|endoftext|>"))
    text["model_type"] = "qwen2"
    vision = CLIPVisionConfig(hidden_size=size["vision_hidden"], intermediate_size=size["vision_hidden"] * 2,
                              num_hidden_layers=size["vision_layers"], num_attention_heads=2, image_size=32,
                              patch_size=8, projection_dim=size["vision_hidden"])
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_id,
                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                         projector_hidden_act="gelu", tie_word_embeddings=False)
    model = LlavaForConditionalGeneration(config)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token="<image>", chat_template=tok.chat_template)
    return model, processor


def build_tiny_vlm(arch: Arch, out_dir: str | Path, *, seed: int = 0, size: Size = "tiny",
                   texts: Iterable[str] | None = None) -> Path:
    """Build a deterministic tiny VLM with random weights and save it to ``out_dir``.

    Args:
        arch: ``"qwen2_5_vl"`` or ``"llava"``.
        out_dir: The model folder to write (created; existing files are overwritten).
        seed: Seeds the weights: the same arguments give the same files.
        size: ``"tiny"`` (64 wide, 2 layers) or ``"small"`` (256 wide, 4 layers).
        texts: Texts to train the tokenizer on (e.g. the questions and options of a data set),
            added to a small built-in corpus.

    Returns:
        The model folder, loadable with :func:`medgr2_hf.vlm.load_vlm` offline.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}: use one of {', '.join(ARCHS)}")
    if size not in SIZES:
        raise ValueError(f"unknown tiny size {size!r}: use one of {', '.join(SIZES)}")
    import torch

    spec = SIZES[size]
    if arch == "qwen2_5_vl":
        image_text = "<|vision_start|><|image_pad|><|vision_end|>"
        tok = train_tokenizer(texts, QWEN_SPECIALS, spec["vocab"], chat_template(image_text))
        builder = _build_qwen
    else:
        tok = train_tokenizer(texts, LLAVA_SPECIALS, spec["vocab"], chat_template("<image>"))
        builder = _build_llava
    devices = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model, processor = builder(spec, tok)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.do_sample = False
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_qwen2_5_vl(out_dir: str | Path, *, seed: int = 0) -> Path:
    """The ``qwen2_5_vl`` :class:`~medgr2.interfaces.TinyModelFactory`: :func:`build_tiny_vlm` for Qwen2.5-VL."""
    return build_tiny_vlm("qwen2_5_vl", out_dir, seed=seed)


def build_tiny_llava(out_dir: str | Path, *, seed: int = 0) -> Path:
    """The ``llava`` :class:`~medgr2.interfaces.TinyModelFactory`: :func:`build_tiny_vlm` for LLaVA."""
    return build_tiny_vlm("llava", out_dir, seed=seed)
