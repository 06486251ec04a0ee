"""Model cards (``README.md``) for the policy and R_φ folders medgr2 writes.

A Hugging Face model card is YAML front matter (library, pipeline tag, base model, tags) plus
Markdown. :func:`write_policy_card` replaces TRL's stub ("fine-tuned version of [None]") with
what a user needs: the base model, the training data with counts, the metrics, the answer
format, and how to load and prompt the model with stock transformers.
:func:`medgr2.hub.write_reward_card` (re-exported here) does the same for a saved R_φ.

Pure Python (json, no torch): the trainers call these after saving.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medgr2.answers import INSTRUCTIONS, build_prompt, target_text
from medgr2.data import VQASample
from medgr2.hub import data_section, markdown_table, write_reward_card, yaml_list

__all__ = ["policy_card", "write_policy_card", "write_reward_card", "write_training_card"]

CARD_FILE = "README.md"


def _is_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name)) and not os.path.exists(name)


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    return markdown_table(dict(metrics), ("metric", "value"), by_count=False)


def _load_snippet(answer_format: str, example_prompt: str) -> str:
    return f'''```python
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

folder = "path/to/this/folder"
# trust_remote_code=True: the folder's processing_medgr2.py (Qwen2.5-VL's processor without video
# support) that needs no torchvision. With torchvision, leave the flag out for the stock processor.
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForImageTextToText.from_pretrained(folder)

prompt = {json.dumps(example_prompt)}
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": prompt}}]}}]
text = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(text=[text], images=[Image.open("image.png").convert("RGB")], return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=64, do_sample=False)
answer = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
```

`medgr2.answers.extract(answer, options)` reads the answer back to an option letter (or `invalid`);
`medgr2_hf.vlm.load_vlm(folder)` loads the same pair inside medgr2. Answer format: `{answer_format}`.'''


def policy_card(*, samples: Sequence[VQASample], base_model: str, method: str, answer_format: str,
                metrics: Mapping[str, Any] | None = None, eval_metrics: Mapping[str, Any] | None = None,
                version: str = "", reward_version: str | None = None,
                licences: Mapping[str, str] | None = None) -> str:
    """The Markdown model card of a trained policy (see :func:`write_policy_card`)."""
    if not samples:
        raise ValueError("a policy card needs the training samples (got none)")
    example = samples[0]
    prompt = build_prompt(example, answer_format)
    target = target_text(example, answer_format)
    base_hub = _is_hub_id(base_model)
    sources = sorted({s.provenance.source_dataset for s in samples if s.provenance.source_dataset})
    front = ["---", "library_name: transformers", "pipeline_tag: image-text-to-text"]
    if base_hub:
        front.append(f"base_model: {base_model}")
    front.append("tags:" + yaml_list(["medgr2", "medical", "vqa", method.lower(), "trl"]))
    if sources:
        front.append("datasets:" + yaml_list(sources))
    front.append("---")
    where = f"[{base_model}](https://huggingface.co/{base_model})" if base_hub else f"`{base_model}` (a local folder)"
    body = [
        f"# MedGR2 policy ({method})",
        f"A vision-language model for multiple-choice medical VQA, trained with {method} by "
        f"medgr2 (MedGR2: generative reward learning for medical VLM reasoning) from {where}." + (f" Version `{version}`." if version else ""),
        "## Base model",
        where,
        "## Training data",
        data_section(samples, licences=licences),
    ]
    if reward_version:
        body.append(f"Samples were scored by the reward model R_φ `{reward_version}` before filtering.")
    body += ["## Metrics", "Training:", _metrics_table(metrics or {})]
    if eval_metrics:
        body += ["Evaluation (held-out samples):", _metrics_table(eval_metrics)]
    body += [
        "## Answer format",
        f"`{answer_format}`: {INSTRUCTIONS[answer_format]} The model was trained on prompts like",
        "```text\n" + prompt + "\n```",
        "and answers like",
        "```text\n" + target + "\n```",
        "## How to load and prompt it",
        "The chat template is ChatML; the image goes before the text in the user turn.",
        _load_snippet(answer_format, prompt),
    ]
    return "\n".join(front) + "\n\n" + "\n\n".join(body) + "\n"


def _main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def write_policy_card(folder: str | os.PathLike[str], *, samples: Sequence[VQASample], base_model: str,
                      method: str, answer_format: str, metrics: Mapping[str, Any] | None = None,
                      eval_metrics: Mapping[str, Any] | None = None, version: str = "",
                      reward_version: str | None = None, also: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Write the policy's model card to ``folder/README.md`` (and to each folder in ``also``).

    ``also`` names folders holding TRL's stub card (the trainer's ``output_dir``) to overwrite.
    Only the main process writes (``RANK`` 0). Returns the card's path.
    """
    path = Path(folder) / CARD_FILE
    if not _main_process():
        return path
    text = policy_card(samples=samples, base_model=str(base_model), method=method, answer_format=answer_format,
                       metrics=metrics, eval_metrics=eval_metrics, version=version, reward_version=reward_version)
    for target in (Path(folder), *map(Path, also)):
        if target.is_dir():
            (target / CARD_FILE).write_text(text, encoding="utf-8")
    return path


def write_training_card(result: Any, *, samples: Sequence[VQASample], base_model: str | os.PathLike[str],
                        method: str, answer_format: str, context: Any = None,
                        output_dir: str | os.PathLike[str] | None = None) -> Path:
    """The trainers' one call after saving: the card of ``result.checkpoint`` (a ``TrainResult``).

    Overwrites TRL's stub card in ``output_dir`` too; names R_φ's version when the context has one.
    """
    rm = getattr(context, "reward_model", None) if context is not None else None
    return write_policy_card(result.checkpoint, samples=samples, base_model=str(base_model), method=method,
                             answer_format=answer_format, metrics=result.metrics, version=result.version,
                             reward_version=getattr(rm, "version", None),
                             also=[output_dir] if output_dir is not None else ())
