"""Hugging Face formats for what a run writes: sample sets as image datasets, R_φ loading and cards.

* :func:`run_set_path` finds a sample set of a run folder (``kept``, ``generated``, ``eval`` ...);
* :func:`export_parquet` writes samples as a Hugging Face dataset: Parquet shards with an
  ``image`` column of the ``datasets.Image`` feature (every image decoded through its registered
  loader: PNG/JPEG files, NIfTI slices, NPZ frames, DICOM ...), plus a dataset card (``README.md``);
  ``datasets.load_dataset("parquet", data_files=...)`` or ``load_dataset(folder)`` reads it;
* :func:`push_dataset_to_hub` uploads such a folder (only when asked for explicitly);
* :func:`load_reward_model` loads a saved R_φ (a version folder, a reward work folder or a run
  folder) through the registry; :func:`write_reward_card` writes its model card.

Nothing heavy at import time: ``datasets``/``pyarrow``/``huggingface_hub`` are imported inside the
functions that need them.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgr2 import artifacts
from medgr2.data import VQASample

CARD_FILE = "README.md"

SOURCE_LICENCES: dict[str, str] = {
    "ham10000": "CC BY-NC 4.0 (non-commercial research)",
    "busi": "research use (BUSI, Al-Dhabyani et al. 2020)",
    "pneumoniamnist": "CC BY 4.0 (MedMNIST)",
    "nct-crc": "CC BY 4.0 (NCT-CRC-HE-100K)",
    "totalsegmentator": "Apache-2.0",
    "figure1": "research use only (per its README)",
    "iu-xray": "CC BY-NC-ND 4.0 (OpenI)",
    "iu x-ray": "CC BY-NC-ND 4.0 (OpenI)",
    "omnimedvqa": "per source dataset (see OmniMedVQA's licence list)",
}
"""Licences of the source datasets as published (``../shared/data/README.md``), by lower-case name prefix."""

RUN_SETS: dict[str, tuple[str, str]] = {
    "seed": ("seed", artifacts.SAMPLES),
    "eval": ("eval-set", artifacts.SAMPLES),
    "generated": ("generate", artifacts.SAMPLES),
    "scored": ("score", artifacts.SCORED),
    "kept": ("filter", artifacts.KEPT),
    "dgen": ("dgen", artifacts.DGEN),
}
"""The sample sets a run writes: name → (stage folder, file). ``seed`` and ``eval`` live in ``cycle-000``."""


# ------------------------------------------------------------------------------------- counts, licences


def licence_of(source: str, overrides: Mapping[str, str] | None = None) -> str:
    """The licence of a source dataset by name (``overrides`` first); ``unknown ...`` otherwise."""
    low = source.lower()
    for key, value in (overrides or {}).items():
        if key.lower() == low:
            return value
    for key, value in SOURCE_LICENCES.items():
        if low == key or low.startswith(key) or key in low:
            return value
    return "unknown: check the source's terms before redistributing"


def sample_counts(samples: Sequence[VQASample]) -> dict[str, Counter]:
    """Counts of ``samples`` by source dataset, modality, question type, split, generator, prompt, R_φ."""
    return {
        "source dataset": Counter(s.provenance.source_dataset or "(unnamed)" for s in samples),
        "modality": Counter(s.modality.value for s in samples),
        "question type": Counter(s.question_type.value for s in samples),
        "split": Counter(s.split or "(none)" for s in samples),
        "generator": Counter(s.provenance.generator or "(source)" for s in samples),
        "prompt strategy": Counter(s.provenance.prompt_strategy or "(none)" for s in samples),
        "R_φ version": Counter((s.reward.model_version or "(unversioned)") if s.reward else "(not scored)"
                               for s in samples),
        "image loader": Counter(ref.loader for s in samples for ref in s.images),
    }


def markdown_table(counter: Mapping[str, Any], head: tuple[str, str], *, by_count: bool = True) -> str:
    """A two-column Markdown table (largest counts first when ``by_count``, else in the given order)."""
    rows = [f"| {head[0]} | {head[1]} |", "| --- | ---: |"]
    items = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))) if by_count else list(counter.items())
    for k, v in items:
        rows.append(f"| {k} | {f'{v:.4g}' if isinstance(v, float) else v} |")
    return "\n".join(rows) if len(rows) > 2 else "(none recorded)"


def data_section(samples: Sequence[VQASample], *, licences: Mapping[str, str] | None = None,
                 keys: Sequence[str] = ("source dataset", "modality", "question type", "split", "generator")) -> str:
    """Markdown: the sample and image counts, one table per key of :func:`sample_counts`, licences."""
    counts = sample_counts(samples)
    images = len({(r.root, r.path, r.frame) for s in samples for r in s.images})
    parts = [f"{len(samples)} multiple-choice VQA samples over {images} distinct images."]
    parts += [markdown_table(counts[k], (k, "samples")) for k in keys]
    rows = ["| source dataset | licence of the images (as published) |", "| --- | --- |"]
    rows += [f"| {src} | {licence_of(src, licences)} |" for src in sorted(counts["source dataset"])]
    parts.append("\n".join(rows))
    return "\n\n".join(parts)


def yaml_list(values: Iterable[str]) -> str:
    """``values`` as the items of a YAML block list (JSON-quoted)."""
    return "".join(f"\n- {json.dumps(v)}" for v in values)


# ------------------------------------------------------------------------------------- run sets


def run_set_path(run_dir: str | os.PathLike[str], name: str, cycle: int | None = None) -> Path:
    """The JSONL file of sample set ``name`` in a run folder (the last cycle that has it by default).

    Raises:
        ValueError: unknown set name.
        FileNotFoundError: the run has no such set (the message lists the sets it has).
    """
    run = Path(run_dir)
    if name not in RUN_SETS:
        raise ValueError(f"unknown sample set {name!r}: use one of {', '.join(RUN_SETS)}")
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist (give --run runs/NAME)")
    stage, file = RUN_SETS[name]
    if name in ("seed", "eval"):
        candidates = [run / "cycle-000" / stage / file]
    elif cycle is not None:
        candidates = [run / f"cycle-{cycle:03d}" / stage / file]
    else:
        candidates = sorted(run.glob(f"cycle-[0-9][0-9][0-9]/{stage}/{file}"), reverse=True)
    for path in candidates:
        if path.is_file():
            return path
    have = [n for n, (st, f) in RUN_SETS.items() if any(run.glob(f"cycle-[0-9][0-9][0-9]/{st}/{f}"))]
    where = f" in cycle {cycle}" if cycle is not None else ""
    raise FileNotFoundError(f"run {run} has no {name!r} set{where} ({stage}/{file}); it has: "
                            f"{', '.join(have) or 'none (has the run started?)'}")


def run_config(run_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The run's resolved ``config.yaml`` (empty when absent)."""
    if run_dir is None or not (Path(run_dir) / "config.yaml").is_file():
        return {}
    import yaml

    return yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {}


# ------------------------------------------------------------------------------------- Parquet export


@dataclass
class DatasetExport:
    """What :func:`export_parquet` wrote."""

    root: Path
    files: list[Path]
    samples: int
    images_decoded: int
    by_loader: dict[str, int] = field(default_factory=dict)
    card: Path | None = None


def _features(multi_image: bool) -> Any:
    from datasets import Features, Image, List, Value

    spec: dict[str, Any] = {
        "id": Value("string"), "image": Image(), "question": Value("string"), "options": List(Value("string")),
        "answer": Value("string"), "answer_letter": Value("string"), "answer_index": Value("int32"),
        "rationale": Value("string"), "modality": Value("string"), "question_type": Value("string"),
        "split": Value("string"), "subject_id": Value("string"), "source_dataset": Value("string"),
        "source_id": Value("string"), "generator": Value("string"), "model_id": Value("string"),
        "prompt_strategy": Value("string"), "cycle": Value("int32"), "reward": Value("float64"),
        "reward_model_version": Value("string"), "tags": List(Value("string")),
        "image_refs": Value("string"), "sample_json": Value("string"),
    }
    if multi_image:
        spec["images"] = List(Image())
    return Features(spec)


def _png(image: Any) -> dict[str, Any]:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def _row(sample: VQASample, images: list[Any], multi_image: bool) -> dict[str, Any]:
    p = sample.provenance
    row = {
        "id": sample.id, "image": images[0], "question": sample.question, "options": list(sample.options),
        "answer": sample.answer, "answer_letter": sample.answer_letter,
        "answer_index": list(sample.options).index(sample.answer), "rationale": sample.rationale,
        "modality": sample.modality.value, "question_type": sample.question_type.value, "split": sample.split,
        "subject_id": sample.subject_id, "source_dataset": p.source_dataset, "source_id": p.source_id,
        "generator": p.generator, "model_id": p.model_id, "prompt_strategy": p.prompt_strategy, "cycle": p.cycle,
        "reward": sample.reward.total if sample.reward else None,
        "reward_model_version": sample.reward.model_version if sample.reward else None, "tags": list(sample.tags),
        "image_refs": json.dumps([r.model_dump(mode="json", exclude_defaults=True) for r in sample.images]),
        "sample_json": sample.model_dump_json(),
    }
    if multi_image:
        row["images"] = images
    return row


def export_parquet(samples: Sequence[VQASample], out_dir: str | os.PathLike[str], registry: Any = None, *,
                   split: str = "train", shard_rows: int = 1000, card: Mapping[str, Any] | None = None,
                   licences: Mapping[str, str] | None = None) -> DatasetExport:
    """Write ``samples`` as a Hugging Face dataset folder: ``data/<split>-NNNNN-of-NNNNN.parquet`` + ``README.md``.

    Every image is decoded through its registered loader (:func:`medgr2.images.open_image`) and
    stored as PNG bytes in an ``image`` column (``datasets.Image``; all images of multi-image
    samples also in ``images``). ``sample_json`` keeps the full sample, so nothing is lost.

    Args:
        samples: The samples to export (at least one).
        out_dir: The dataset folder to write (created).
        registry: Where the image loaders are looked up (default: the process registry).
        split: The split name of the files (``train``, ``test`` ...).
        shard_rows: Rows per Parquet file.
        card: Facts for the dataset card (``title``, ``run``, ``set``, ``filters``, ``funnel``, ``config``).
        licences: Licences by source dataset name, overriding :data:`SOURCE_LICENCES`.

    Raises:
        ValueError: no samples, a bad split name, or an image that no loader can decode (named).
        ImportError: ``datasets``/``pyarrow`` are not installed (the message says which extra to install).
    """
    from medgr2.images import open_image
    from medgr2.plugins import ensure_registry

    samples = list(samples)
    if not samples:
        raise ValueError("no samples to export: the set is empty")
    if not re.fullmatch(r"[A-Za-z][\w-]*", split):
        raise ValueError(f"split name {split!r} must be a word such as train, validation or test")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("exporting a Hugging Face dataset needs `datasets` and `pyarrow`: "
                          "pip install 'medgr2[train]' (or pip install datasets)") from exc
    registry = ensure_registry(registry)
    multi = any(len(s.images) > 1 for s in samples)
    features = _features(multi)
    schema = features.arrow_schema
    root = Path(out_dir)
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob(f"{split}-*.parquet"):
        old.unlink()
    n_shards = max(1, -(-len(samples) // max(1, shard_rows)))
    files: list[Path] = []
    decoded: Counter = Counter()
    cache: dict[tuple, dict[str, Any]] = {}
    for shard in range(n_shards):
        rows = []
        for sample in samples[shard * shard_rows:(shard + 1) * shard_rows]:
            images = []
            for ref in sample.images:
                key = (ref.root, ref.path, ref.loader, ref.frame)
                if key not in cache:
                    try:
                        image = open_image(ref, registry)
                    except Exception as exc:
                        raise ValueError(
                            f"sample {sample.id}: image {ref.path!r} (loader {ref.loader!r}, frame {ref.frame}, "
                            f"root {ref.root}) does not decode: {exc}. Fix the reference or drop the sample "
                            "before exporting.") from exc
                    cache[key] = _png(image.convert("RGB") if image.mode not in ("RGB", "L") else image)
                decoded[ref.loader] += 1
                images.append(cache[key])
            rows.append(features.encode_example(_row(sample, images, multi)))
        path = data_dir / f"{split}-{shard:05d}-of-{n_shards:05d}.parquet"
        table = pa.Table.from_pylist(rows, schema=schema)
        pq.write_table(table, path)
        files.append(path)
        if len(cache) > 4 * shard_rows:
            cache.clear()
    result = DatasetExport(root=root, files=files, samples=len(samples), images_decoded=sum(decoded.values()),
                           by_loader=dict(decoded))
    result.card = write_dataset_card(root, samples, result, split=split, facts=card or {}, licences=licences)
    return result


def dataset_card(samples: Sequence[VQASample], export: DatasetExport, *, split: str = "train",
                 facts: Mapping[str, Any] | None = None, licences: Mapping[str, str] | None = None) -> str:
    """The dataset card (``README.md``): generator, prompt strategy, R_φ version, filters, counts, licences."""
    facts = dict(facts or {})
    counts = sample_counts(samples)
    n = len(samples)
    size = ("n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000
            else "100K<n<1M")
    front = ["---", "license: other", "task_categories:" + yaml_list(["visual-question-answering"]),
             "language:" + yaml_list(["en"]), "tags:" + yaml_list(["medical", "medgr2", "vqa"]),
             "size_categories:" + yaml_list([size]), "pretty_name: " + json.dumps(facts.get("title") or "MedGR2 VQA"),
             "configs:", "- config_name: default", "  data_files:", f"  - split: {split}",
             f"    path: data/{split}-*.parquet", "---"]
    title = facts.get("title") or "MedGR2 VQA samples"
    origin = ""
    if facts.get("run"):
        origin = f" from the `{facts.get('set', 'samples')}` set of the medgr2 run `{facts['run']}`"
    elif facts.get("source_file"):
        origin = f" from `{facts['source_file']}`"
    body = [
        f"# {title}",
        (f"Multiple-choice medical VQA samples (image, question, options, answer, rationale){origin}, "
         "written by medgr2 (MedGR2: generative reward learning for medical VLM reasoning)."),
        "## Counts",
        data_section(samples, licences=licences, keys=("source dataset", "modality", "question type", "split")),
        (f"Images decoded into the `image` column: {export.images_decoded} "
         f"({', '.join(f'{k}: {v}' for k, v in sorted(export.by_loader.items()))})."),
        "## How the samples were made",
        "Generator (`provenance.generator`):", markdown_table(counts["generator"], ("generator", "samples")),
        "Prompt strategy:", markdown_table(counts["prompt strategy"], ("prompt strategy", "samples")),
        "Reward model R_φ that scored them:", markdown_table(counts["R_φ version"], ("R_φ version", "samples")),
    ]
    filters = facts.get("filters")
    if filters:
        body += ["Filters (in order, from the run's config):",
                 "```json\n" + json.dumps(filters, indent=2, sort_keys=True, default=str) + "\n```"]
    funnel = facts.get("funnel")
    if funnel:
        body += ["Filter funnel:", "```json\n" + json.dumps(funnel, indent=2, default=str) + "\n```"]
    body += [
        "## Licences",
        ("The images keep their source's licence; redistribute only as it allows. "
         "The questions and answers were written by the generators named above."),
        "## Columns",
        ("`image` (PNG, decoded from the source: files, NIfTI slices, NPZ frames ...), `question`, `options`, "
         "`answer`, `answer_letter`, `answer_index`, `rationale`, `modality`, `question_type`, `split`, "
         "`source_dataset`, `source_id`, `generator`, `model_id`, `prompt_strategy`, `cycle`, `reward`, "
         "`reward_model_version`, `tags`, `image_refs` (the original references, JSON) and `sample_json` "
         "(the full `medgr2.data.VQASample`); `images` (all images) when some sample has several."),
        "## How to load it",
        ("```python\nfrom datasets import load_dataset\n\n"
         f"ds = load_dataset(\"parquet\", data_files=\"data/{split}-*.parquet\", split=\"train\")\n"
         "ds[0][\"image\"]  # a PIL image\n```"),
        "medgr2 reads it back as a dataset source: `{name: hf, options: {path: <this folder>}}`.",
    ]
    return "\n".join(front) + "\n\n" + "\n\n".join(body) + "\n"


def write_dataset_card(root: str | os.PathLike[str], samples: Sequence[VQASample], export: DatasetExport, *,
                       split: str = "train", facts: Mapping[str, Any] | None = None,
                       licences: Mapping[str, str] | None = None) -> Path:
    """Write :func:`dataset_card` to ``root/README.md``."""
    path = Path(root) / CARD_FILE
    path.write_text(dataset_card(samples, export, split=split, facts=facts, licences=licences), encoding="utf-8")
    return path


def push_dataset_to_hub(folder: str | os.PathLike[str], repo_id: str, *, private: bool = True,
                        token: str | None = None) -> str:
    """Upload an exported dataset folder to the Hub as dataset ``repo_id``; returns its URL.

    Only called behind an explicit ``--push-to-hub REPO``; the token comes from ``token``, else
    ``HF_TOKEN`` / ``huggingface-cli login``.
    """
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ValueError(f"--push-to-hub {repo_id!r} must look like owner/name")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
                      commit_message="Upload a medgr2 VQA dataset")
    return f"https://huggingface.co/datasets/{repo_id}"


# ------------------------------------------------------------------------------------- R_φ


REWARD_CONFIG = "reward_model.json"


def _recorded(folder: Path, recorded: str) -> Path:
    """A path a run recorded inside ``folder``: as written when it exists (absolute, or relative to
    where the run was started and still valid here), else re-rooted at ``folder`` (the part after the
    folder's own name), so a run folder can be read from anywhere."""
    path = Path(recorded)
    if path.is_absolute() or path.exists() or folder.name not in path.parts:
        return path
    at = len(path.parts) - 1 - path.parts[::-1].index(folder.name)
    return folder.joinpath(*path.parts[at + 1:])


def resolve_reward_folder(path: str | os.PathLike[str]) -> Path:
    """The R_φ version folder that ``path`` means.

    ``path`` may be a version folder (holds ``reward_model.json``), a reward work folder (holds
    ``latest.json``, e.g. ``runs/NAME/cycle-000/reward-init``) or a run folder (the R_φ of its
    last completed reward stage, from ``manifest.json``).
    """
    p = Path(path).expanduser()
    if (p / REWARD_CONFIG).is_file():
        return p
    if (p / "latest.json").is_file():
        return resolve_reward_folder(_recorded(p, json.loads((p / "latest.json").read_text(encoding="utf-8"))["path"]))
    manifest = p / artifacts.MANIFEST
    if manifest.is_file():
        stages = json.loads(manifest.read_text(encoding="utf-8")).get("stages", {})
        for key in sorted(stages, reverse=True):
            if key.endswith(("/reward-update", "/reward-init")):
                checkpoint = (stages[key].get("outputs") or {}).get("checkpoint")
                if checkpoint and (_recorded(p, checkpoint) / REWARD_CONFIG).is_file():
                    return _recorded(p, checkpoint)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist: give a reward model folder (…/versions/vNNN), the folder "
                                "`medgr2 train-rm` wrote into, or a run folder")
    raise FileNotFoundError(f"{p} holds no reward model: expected {REWARD_CONFIG} (a version folder), latest.json "
                            "(a reward work folder) or manifest.json with a completed reward stage (a run folder)")


def load_reward_model(path: str | os.PathLike[str], registry: Any = None, *, kind: str | None = None,
                      **options: Any) -> Any:
    """Load a saved reward model R_φ, ready to ``score``.

    The kind saved in ``reward_model.json`` picks the registered reward model; ``options``
    override its runtime options (``device``, ``score_batch_size``, ``threads`` ...).

    Args:
        path: A version folder, a reward work folder or a run folder (see :func:`resolve_reward_folder`).
        registry: Where reward models are looked up (default: the installed plugins).
        kind: The registered reward model name, for a folder saved without ``reward_model.json``
            (a third-party R_φ); ignored when the folder names its kind.

    Raises:
        FileNotFoundError: nothing loadable at ``path``.
        KeyError: the saved kind is not registered (the message names the plugin to install).
    """
    from medgr2.plugins import ensure_registry

    if kind is not None and Path(path).is_dir() and not (Path(path) / REWARD_CONFIG).is_file():
        folder = Path(path)
    else:
        folder = resolve_reward_folder(path)
        kind = json.loads((folder / REWARD_CONFIG).read_text(encoding="utf-8")).get("kind")
        if not kind:
            raise ValueError(f"{folder / REWARD_CONFIG} names no reward model kind: pass kind=NAME")
    registry = ensure_registry(registry)
    rm = registry.create("reward_model", kind, options or None)
    rm.load(folder)
    return rm


def reward_card(config: Mapping[str, Any], *, calibration: Mapping[str, Any] | None = None,
                examples: int | None = None) -> str:
    """The Markdown card of a saved reward model from its ``reward_model.json`` (and calibration)."""
    kind = config.get("kind", "?")
    version = config.get("version", "?")
    facts: dict[str, Any] = {"kind": kind, "version": version, "parent version": config.get("parent_version") or "-",
                             "backbone": config.get("backbone", "-"), "saved at": config.get("saved_at", "-")}
    if examples is not None:
        facts["training examples"] = examples
    front = ["---", "library_name: medgr2", "tags:" + yaml_list(["medgr2", "medical", "reward-model", kind]), "---"]
    body = [
        f"# MedGR2 reward model R_φ `{version}`",
        ("R_φ scores (image, question, answer[, rationale]) on the paper's scale [−6, 10]: 10 for the original "
         "answer, 6 for WordNet synonyms, 0 for phrase deletions, −6 for another study's text. It is a medgr2 "
         "model (safetensors + JSON, no pickle, no remote code), not a transformers one."),
        "## What it is",
        "| field | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in facts.items()),
        "Options:",
        "```json\n" + json.dumps(config.get("options", {}), indent=2, sort_keys=True) + "\n```",
    ]
    if calibration:
        keep = {k: v for k, v in calibration.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        body += ["## Metrics (held-out grade set)", markdown_table(keep, ("metric", "value"), by_count=False)]
    body += [
        "## How to load it",
        ("```python\nimport medgr2\nfrom medgr2.data import RewardInput\n\n"
         "rm = medgr2.load_reward_model(\"path/to/this/folder\")  # or a run folder\n"
         "scores = rm.score([RewardInput(question=\"What does the X-ray show?\", answer=\"pneumonia\")])\n```"),
        "See `docs/reward-model.md` in medgr2 for the inputs, losses and saved files.",
    ]
    return "\n".join(front) + "\n\n" + "\n\n".join(body) + "\n"


def write_reward_card(folder: str | os.PathLike[str], *, examples: int | None = None) -> Path:
    """Write ``folder/README.md`` for a saved reward model (reads ``reward_model.json``, ``calibration.json``)."""
    folder = Path(folder)
    cfg_file = folder / REWARD_CONFIG
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{folder} is not a saved reward model (no {REWARD_CONFIG})")
    config = json.loads(cfg_file.read_text(encoding="utf-8"))
    cal_file = folder / artifacts.CALIBRATION
    calibration = json.loads(cal_file.read_text(encoding="utf-8")) if cal_file.is_file() else None
    path = folder / CARD_FILE
    if int(os.environ.get("RANK", "0")) == 0:
        path.write_text(reward_card(config, calibration=calibration, examples=examples), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------- model sources

MODEL_FORMS = ("a local folder with config.json (written by save_pretrained), or a Hub id (owner/name) "
               "present in the local Hugging Face cache")
"""What :func:`resolve_model` accepts, for option descriptions and messages."""

_HUB_MODEL_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``, else ``XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def is_hub_model_id(value: str) -> bool:
    """Whether ``value`` is spelled like a Hub model id (``owner/name`` or a bare ``name``)."""
    return bool(_HUB_MODEL_ID.fullmatch(value)) and ".." not in value and not value.endswith(".git")


def resolve_model(value: str | os.PathLike[str], *, what: str = "model", revision: str | None = None,
                  cache_dir: str | os.PathLike[str] | None = None, required: str = "config.json") -> Path:
    """The local folder of a model named the way ``from_pretrained`` names it, **offline**.

    ``value`` is either a local folder holding ``required`` (``config.json``), or a Hub id
    (``Qwen/Qwen2.5-VL-3B-Instruct``) whose snapshot is already in the Hugging Face cache; then the
    snapshot folder (``models--owner--name/snapshots/<hash>/``, through ``refs/<revision>``) is returned.
    Nothing is ever downloaded (``local_files_only=True``), whatever ``HF_HUB_OFFLINE`` says.

    Args:
        value: The folder or Hub id.
        what: The option being resolved, for messages (``policy.model``, ``reward model_path`` ...).
        revision: The cached revision of a Hub id (a branch, tag or commit; default ``main``).
        cache_dir: The hub cache to read (default: :func:`hub_cache_dir`).
        required: The file the folder must hold.

    Raises:
        FileNotFoundError: neither form: the message says which forms are accepted, where the cache
            was looked up, and how to fetch the model once.
    """
    text = os.fspath(value).strip()
    if not text:
        raise FileNotFoundError(f"{what} is empty: give {MODEL_FORMS}")
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / required).is_file():
            return path
        raise FileNotFoundError(
            f"{what} {text!r} is a folder without {required}: give {MODEL_FORMS}. Save the model there with "
            "save_pretrained (model and processor), or build a tiny one with `medgr2 models tiny --out DIR`.")
    cache = Path(cache_dir).expanduser() if cache_dir else hub_cache_dir()
    forms = (f"{what} {text!r} is neither a local folder with {required} nor a Hub id present in the local "
             f"Hugging Face cache (HF_HUB_CACHE={cache})")
    if path.exists():
        raise FileNotFoundError(f"{what} {text!r} is a file, not a model folder: give {MODEL_FORMS}")
    if not is_hub_model_id(text):
        raise FileNotFoundError(f"{forms}: no such folder, and it is not spelled like a Hub id (owner/name).")
    fetch = (f"medgr2 never downloads at run time: fetch it once with `huggingface-cli download {text}"
             f"{f' --revision {revision}' if revision else ''}` (or set HF_HUB_CACHE / HF_HOME to the cache that "
             "holds it), or point to a local folder.")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FileNotFoundError(f"{forms}: huggingface_hub is not installed, so the cache cannot be read "
                                "(pip install 'medgr2[hf]'), or point to a local folder.") from exc
    try:
        snapshot = Path(snapshot_download(text, repo_type="model", revision=revision, cache_dir=str(cache),
                                          local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError) as exc:
        raise FileNotFoundError(f"{forms}. {fetch}") from exc
    if not (snapshot / required).is_file():
        raise FileNotFoundError(f"{what} {text!r}: the cached snapshot {snapshot} has no {required} (an incomplete "
                                f"download?). {fetch}")
    return snapshot
