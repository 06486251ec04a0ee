"""Model cards (``README.md``) for the policy and R_φ folders medgr2 writes.

A Hugging Face model card is YAML front matter (library, pipeline tag, base model, tags) plus
Markdown. :func:`write_policy_card` replaces TRL's stub ("fine-tuned version of [None]") with
what a user needs: the base model, the training data with counts, the metrics, the answer
format, and how to load and prompt the model with stock transformers.
:func:`write_reward_card` does the same for a saved reward model (``reward_model.json``).

Pure Python (json, no torch): the trainers call these after saving.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medgr2.answers import INSTRUCTIONS, build_prompt, target_text
from medgr2.data import VQASample

CARD_FILE = "README.md"

SOURCE_LICENCES: dict[str, str] = {
    "ham10000": "CC BY-NC 4.0 (non-commercial research)",
    "busi": "research use (BUSI, Al-Dhabyani et al. 2020)",
    "pneumoniamnist": "CC BY 4.0 (MedMNIST)",
    "nct-crc-he": "CC BY 4.0 (NCT-CRC-HE-100K)",
    "nct-crc": "CC BY 4.0 (NCT-CRC-HE-100K)",
    "totalsegmentator": "Apache-2.0",
    "figure1": "research use only (per its README)",
    "figure1-covid": "research use only (per its README)",
    "iu-xray": "CC BY-NC-ND 4.0 (OpenI)",
    "iu x-ray": "CC BY-NC-ND 4.0 (OpenI)",
}
"""Licences of the source datasets as published (see ``../shared/data/README.md``), by lower-case name."""


def licence_of(source: str, overrides: Mapping[str, str] | None = None) -> str:
    """The licence of a source dataset by name (``overrides`` first); ``unknown`` with a hint otherwise."""
    for table in (overrides or {}, SOURCE_LICENCES):
        for key, value in table.items():
            if key.lower() == source.lower():
                return value
    low = source.lower()
    for key, value in SOURCE_LICENCES.items():
        if low.startswith(key) or key in low:
            return value
    return "unknown: check the source's terms before redistributing"


def _table(counter: Mapping[str, int] | Counter, head: tuple[str, str]) -> str:
    rows = [f"| {head[0]} | {head[1]} |", "| --- | ---: |"]
    rows += [f"| {k or '(none)'} | {v} |" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))]
    return "\n".join(rows)


def sample_counts(samples: Sequence[VQASample]) -> dict[str, Counter]:
    """Counts of ``samples`` by source dataset, modality, question type, split and image loader."""
    return {
        "source dataset": Counter(s.provenance.source_dataset or "(unnamed)" for s in samples),
        "modality": Counter(s.modality.value for s in samples),
        "question type": Counter(s.question_type.value for s in samples),
        "split": Counter(s.split or "(none)" for s in samples),
        "generator": Counter(s.provenance.generator or "(source)" for s in samples),
        "image loader": Counter(ref.loader for s in samples for ref in s.images),
    }


def data_section(samples: Sequence[VQASample], *, licences: Mapping[str, str] | None = None) -> str:
    """Markdown: the sample count, tables by source/modality/question type/split, and licences."""
    counts = sample_counts(samples)
    images = len({(r.root, r.path, r.frame) for s in samples for r in s.images})
    parts = [f"{len(samples)} multiple-choice VQA samples over {images} distinct images."]
    for key in ("source dataset", "modality", "question type", "split", "generator"):
        parts.append(_table(counts[key], (key, "samples")))
    lic = Counter()
    lic_rows = ["| source dataset | licence of the images (as published) |", "| --- | --- |"]
    for source in sorted(counts["source dataset"]):
        value = licence_of(source, licences)
        lic[value] += 1
        lic_rows.append(f"| {source} | {value} |")
    parts.append("\n".join(lic_rows))
    return "\n\n".join(parts)


def _yaml_list(values: Iterable[str]) -> str:
    return "".join(f"\n- {json.dumps(v)}" for v in values)


def _is_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name)) and not os.path.exists(name)


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = ["| metric | value |", "| --- | ---: |"]
    for k, v in metrics.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        rows.append(f"| {k} | {v} |")
    return "\n".join(rows) if len(rows) > 2 else "(none recorded)"


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
    front.append("tags:" + _yaml_list(["medgr2", "medical", "vqa", method.lower(), "trl"]))
    if sources:
        front.append("datasets:" + _yaml_list(sources))
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


def reward_card(config: Mapping[str, Any], *, calibration: Mapping[str, Any] | None = None,
                examples: int | None = None) -> str:
    """The Markdown card of a saved reward model from its ``reward_model.json`` (and calibration)."""
    kind = config.get("kind", "?")
    version = config.get("version", "?")
    options = config.get("options", {})
    front = ["---", "library_name: medgr2", "tags:" + _yaml_list(["medgr2", "medical", "reward-model", kind]), "---"]
    body = [
        f"# MedGR2 reward model R_φ `{version}`",
        "R_φ scores (image, question, answer[, rationale]) on the paper's scale [−6, 10]: 10 for the "
        "original answer, 6 for WordNet synonyms, 0 for phrase deletions, −6 for another study's text. "
        "It is a medgr2 model (safetensors + JSON, no pickle, no remote code), not a transformers one.",
        "## What it is",
        _metrics_table({"kind": kind, "version": version, "parent version": config.get("parent_version") or "-",
                        "backbone": config.get("backbone", "-"), "saved at": config.get("saved_at", "-"),
                        **({"training examples": examples} if examples is not None else {})}),
        "Options:",
        "```json\n" + json.dumps(options, indent=2, sort_keys=True) + "\n```",
    ]
    if calibration:
        keep = {k: v for k, v in calibration.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        body += ["## Metrics (held-out grade set)", _metrics_table(keep)]
    body += [
        "## How to load it",
        "```python\nimport medgr2\nfrom medgr2.data import RewardInput\n\n"
        "rm = medgr2.load_reward_model(\"path/to/this/folder\")  # also a run folder or its reward-model/\n"
        "scores = rm.score([RewardInput(question=\"What does the X-ray show?\", answer=\"pneumonia\")])\n```",
        "See `docs/reward-model.md` in medgr2 for the inputs, losses and saved files.",
    ]
    return "\n".join(front) + "\n\n" + "\n\n".join(body) + "\n"


def write_reward_card(folder: str | os.PathLike[str], *, examples: int | None = None) -> Path:
    """Write ``folder/README.md`` for a saved reward model (reads ``reward_model.json``, ``calibration.json``)."""
    folder = Path(folder)
    cfg_file = folder / "reward_model.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{folder} is not a saved reward model (no reward_model.json)")
    config = json.loads(cfg_file.read_text(encoding="utf-8"))
    cal_file = folder / "calibration.json"
    calibration = json.loads(cal_file.read_text(encoding="utf-8")) if cal_file.is_file() else None
    path = folder / CARD_FILE
    if _main_process():
        path.write_text(reward_card(config, calibration=calibration, examples=examples), encoding="utf-8")
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
