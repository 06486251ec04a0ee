"""Loading and running local vision-language models (any ``AutoModelForImageTextToText`` folder).

* :func:`load_vlm` loads a model folder with a *real* processor (never a bare tokenizer);
* :func:`chat_messages` / :func:`build_inputs` turn (PIL images, text) pairs into model inputs
  through the processor's chat template;
* :func:`generate` decodes greedily in batches;
* :func:`score_options` gives the log-probability of each candidate answer text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class ProcessorError(RuntimeError):
    """A model folder has no usable multimodal processor."""


def load_processor(path: Path) -> Any:
    """The multimodal processor of a model folder, left-padded; refuses a bare tokenizer."""
    from transformers import AutoProcessor
    from transformers.processing_utils import ProcessorMixin

    import medgr2_hf.processors  # noqa: F401 - registers the torchvision-free processors

    try:
        # Never runs the folder's own code: a folder medgr2 saved names the stock Qwen2_5_VLProcessor
        # (with torchvision it loads as is) and carries processing_medgr2.py for stock loaders.
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    except (ImportError, ValueError, OSError) as exc:
        if "torchvision" not in str(exc).lower() and "video" not in str(exc).lower():
            raise ProcessorError(f"cannot load the processor of {path}: {exc}") from exc
        # A real Qwen2.5-VL folder without torchvision: its video processor cannot load.
        from medgr2_hf.processors import Qwen2_5_VLImageProcessor

        processor = Qwen2_5_VLImageProcessor.from_pretrained(path)
    if not isinstance(processor, ProcessorMixin) or getattr(processor, "image_processor", None) is None:
        raise ProcessorError(
            f"{path} loads as {type(processor).__name__}, not a multimodal processor: images would be dropped. "
            "Save the processor into the folder (processor.save_pretrained) and, for a custom processor class, "
            "register it with transformers.AutoProcessor.register before loading."
        )
    processor.tokenizer.padding_side = "left"
    return processor


def load_vlm(path: str | Path, *, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """Load ``(model, processor)`` from a local folder (works with ``HF_HUB_OFFLINE=1``).

    Args:
        path: A folder written by ``save_pretrained`` (e.g. by :func:`medgr2_hf.tiny.build_tiny_vlm`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        dtype: A torch dtype or its name (``"bfloat16"``); ``None`` keeps float32 on CPU and uses
            bfloat16 on GPU.

    Raises:
        FileNotFoundError: ``path`` is not a model folder.
        ProcessorError: the folder has no multimodal processor.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a model folder (no config.json); build one with "
                                "`medgr2 models tiny --out DIR` or point to a saved checkpoint")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype is None:
        dtype = torch.float32 if str(device).startswith("cpu") else torch.bfloat16
    processor = load_processor(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(device)
    model.eval()
    return model, processor


def chat_messages(text: str, n_images: int = 1, answer: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for one user turn with ``n_images`` images then ``text`` (plus an answer turn)."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": text})
    messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def build_inputs(processor: Any, images: Sequence[Any], texts: Sequence[str], *, device: Any = "cpu",
                 continuations: Sequence[str] | None = None) -> Any:
    """Batch inputs for (image, text) pairs, ending with the assistant prompt (left padded).

    ``images[i]`` is a PIL image or a list of them; ``continuations[i]``, when given, is appended
    after the generation prompt (for scoring answers).
    """
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images for {len(texts)} texts: give one image (or list) per text")
    image_lists = [list(im) if isinstance(im, (list, tuple)) else [im] for im in images]
    prompts = [processor.apply_chat_template(chat_messages(t, len(ims)), add_generation_prompt=True)
               for t, ims in zip(texts, image_lists, strict=True)]
    if continuations is not None:
        prompts = [p + c for p, c in zip(prompts, continuations, strict=True)]
    processor.tokenizer.padding_side = "left"
    batch = processor(text=prompts, images=image_lists, return_tensors="pt", padding=True)
    return batch.to(device)


def generate(model: Any, processor: Any, images: Sequence[Any], texts: Sequence[str], *,
             max_new_tokens: int = 32, batch_size: int = 8) -> list[str]:
    """Greedy completions for (image, text) pairs, decoded without special tokens."""
    import torch

    out: list[str] = []
    for start in range(0, len(texts), batch_size):
        batch = build_inputs(processor, images[start:start + batch_size], texts[start:start + batch_size],
                             device=model.device)
        with torch.inference_mode():
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=processor.tokenizer.pad_token_id)
        new = ids[:, batch["input_ids"].shape[1]:]
        out += [s.strip() for s in processor.batch_decode(new, skip_special_tokens=True)]
    return out


def score_options(model: Any, processor: Any, image: Any, text: str, options: Sequence[str]) -> list[float]:
    """Sum log-probability of each option text as the answer to (image, text).

    The options are scored in one batch; with left padding the continuation tokens sit at the
    end of each row, so the prompt never needs aligning.
    """
    import torch

    prompt_len = build_inputs(processor, [image], [text])["input_ids"].shape[1]
    batch = build_inputs(processor, [image] * len(options), [text] * len(options),
                         device=model.device, continuations=list(options))
    lengths = batch["attention_mask"].sum(dim=1) - prompt_len
    with torch.inference_mode():
        logits = model(**batch).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    target = batch["input_ids"][:, 1:]
    token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    width = token_logp.shape[1]
    scores = []
    for row, n in enumerate(lengths.tolist()):
        scores.append(float(token_logp[row, width - int(n):].sum()) if n > 0 else float("-inf"))
    return scores
