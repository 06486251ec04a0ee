"""A versioned exemplar bank: the self-updating API generator (Algorithm 1, line 14).

An API generator cannot be fine-tuned, so "high-reward data updates the generator" is done with
few-shot exemplars: after a cycle's filter, :func:`update_bank` keeps the top-reward kept samples
per (modality × question type) cell, merged with the previous version's, in a new version folder::

    bank_dir/
      v001/exemplars.jsonl   # one Exemplar per line: image *reference*, question, options, answer,
      v001/bank.json         #   rationale, reward (never pixels); bank.json: version, counts per cell ...
      v002/...

The generator option ``exemplar_bank`` (a bank folder: its newest complete version, or one version
folder) makes the ``meta_cognitive`` prompt show the exemplars of the item's modality (and of the
question types its labels name) as text-only examples; no exemplar image is ever sent. The bank
version is part of every request's cache key and of ``provenance.generator_version``
(``<medgr2 version>+bank.v002``), so replies are never reused across bank versions.

Everything here is deterministic: ties in reward are broken by sample id, files are written in a
fixed order (no timestamps), and ``bank.json`` is written last (a version folder without it is
incomplete and ignored by :func:`load_bank`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medgr2.data import ImageRef, Modality, QuestionType, VQASample, stable_hash
from medgr2.store import read_json, read_jsonl, write_json, write_jsonl

EXEMPLARS = "exemplars.jsonl"
BANK_JSON = "bank.json"
_VERSION = re.compile(r"^v(\d{3,})$")


class Exemplar(BaseModel):
    """One bank entry: a kept sample's text, its image references and its reward."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="The sample's id (ties in reward are broken by it).")
    images: tuple[ImageRef, ...] = Field(min_length=1, description="References only, never pixels.")
    question: str
    options: tuple[str, ...]
    answer: str
    rationale: str = ""
    modality: Modality
    question_type: QuestionType
    reward: float
    source_dataset: str = ""
    source_cycle: int = Field(default=0, ge=0, description="The cycle whose kept samples it came from.")
    restricted: bool = Field(default=False, description="The sample is tagged restricted: its text is never "
                                                        "shown to an external backend unless allow_restricted.")

    @property
    def cell(self) -> str:
        """``modality/question_type``."""
        return cell_key(self.modality, self.question_type)

    @classmethod
    def from_sample(cls, sample: VQASample, source_cycle: int) -> Exemplar:
        assert sample.reward is not None
        return cls(
            id=sample.id, images=sample.images, question=sample.question, options=sample.options,
            answer=sample.answer, rationale=sample.rationale, modality=sample.modality,
            question_type=sample.question_type, reward=float(sample.reward.total),
            source_dataset=sample.provenance.source_dataset, source_cycle=source_cycle,
            restricted="restricted" in sample.tags,
        )


class BankInfo(BaseModel):
    """What ``bank.json`` records about one bank version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(description="'v001', 'v002' ...")
    path: str = Field(description="The version folder (pass it as the generator option exemplar_bank).")
    previous: str | None = Field(default=None, description="The version merged into this one.")
    source_cycle: int = 0
    per_cell: int = 3
    counts: dict[str, int] = Field(default_factory=dict, description="Exemplars per modality/question_type.")
    total: int = 0
    added: int = Field(default=0, description="Exemplars that were not in the previous version.")
    content_hash: str = ""


def cell_key(modality: Modality, question_type: QuestionType) -> str:
    return f"{modality.value}/{question_type.value}"


def version_name(version: int | str) -> str:
    """``3``, ``"3"``, ``"v3"`` or ``"v003"`` -> ``"v003"``."""
    text = str(version).strip().lower().removeprefix("v")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"bank version {version!r} is not a positive number (write e.g. 2 or 'v002')")
    return f"v{int(text):03d}"


def _versions(bank_dir: Path) -> list[tuple[int, Path]]:
    """Complete version folders (with bank.json) under ``bank_dir``, oldest first."""
    if not bank_dir.is_dir():
        return []
    found = []
    for child in bank_dir.iterdir():
        m = _VERSION.match(child.name)
        if m and (child / BANK_JSON).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def _rank(entries: Iterable[Exemplar]) -> list[Exemplar]:
    """Best first: higher reward, then sample id (deterministic ties)."""
    return sorted(entries, key=lambda e: (-e.reward, e.id))


def select_top(entries: Iterable[Exemplar], per_cell: int) -> list[Exemplar]:
    """The ``per_cell`` best entries of each cell (one entry per sample id: its highest reward),
    ordered by cell, then rank."""
    best: dict[str, Exemplar] = {}
    for e in _rank(entries):
        best.setdefault(e.id, e)
    cells: dict[str, list[Exemplar]] = {}
    for e in _rank(best.values()):
        cells.setdefault(e.cell, []).append(e)
    return [e for cell in sorted(cells) for e in cells[cell][:per_cell]]


def update_bank(
    kept_samples: Sequence[VQASample],
    bank_dir: str | Path,
    *,
    per_cell: int = 3,
    version: int | str | None = None,
    source_cycle: int = 0,
) -> BankInfo:
    """Write a new bank version from a cycle's kept, reward-scored samples and return its info.

    The new version holds, per (modality × question type) cell, the ``per_cell`` highest-reward
    entries among ``kept_samples`` and the exemplars of the newest complete version below it
    (``previous``). ``version``: the number to write (the loop passes the cycle, so a re-run
    rewrites the same folder with the same content); ``None``: one more than the newest.

    Raises ``ValueError`` when a sample has no reward (score the kept samples with R_φ first), a
    sample is from the test split (its text would leak evaluation answers into the prompts) or
    ``per_cell`` is below 1.
    """
    if per_cell < 1:
        raise ValueError(f"per_cell must be at least 1, got {per_cell}")
    unscored = [s.id for s in kept_samples if s.reward is None]
    if unscored:
        raise ValueError(
            f"{len(unscored)} kept sample(s) have no reward (e.g. {unscored[:3]}): the exemplar bank ranks by "
            "sample.reward.total, so score them with the reward model (the reward filter) before updating the bank"
        )
    held_out = [s.id for s in kept_samples if s.split == "test"]
    if held_out:
        raise ValueError(
            f"{len(held_out)} kept sample(s) are from the test split (e.g. {held_out[:3]}): exemplars are shown to "
            "the generator, so they must never come from the evaluation data; pass train samples only"
        )
    bank_dir = Path(bank_dir)
    existing = _versions(bank_dir)
    name = version_name(version) if version is not None else version_name((existing[-1][0] if existing else 0) + 1)
    number = int(name[1:])
    below = [(n, p) for n, p in existing if n < number]
    previous = load_bank(below[-1][1]) if below else None
    old = list(previous.exemplars) if previous else []
    new = [Exemplar.from_sample(s, source_cycle) for s in kept_samples]
    chosen = select_top([*old, *new], per_cell)
    old_ids = {e.id for e in old}
    counts: dict[str, int] = {}
    for e in chosen:
        counts[e.cell] = counts.get(e.cell, 0) + 1
    folder = bank_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BANK_JSON).unlink(missing_ok=True)  # incomplete until rewritten below
    write_jsonl(folder / EXEMPLARS, chosen)
    info = BankInfo(
        version=name, path=str(folder), previous=previous.info.version if previous else None,
        source_cycle=source_cycle, per_cell=per_cell, counts=counts, total=len(chosen),
        added=sum(e.id not in old_ids for e in chosen),
        content_hash=stable_hash([e.model_dump(mode="json") for e in chosen]),
    )
    write_json(folder / BANK_JSON, info.model_dump(mode="json", exclude={"path"}))
    return info


class ExemplarBank:
    """One loaded bank version: :attr:`info` and its :attr:`exemplars` (cell, then rank order)."""

    def __init__(self, info: BankInfo, exemplars: Sequence[Exemplar]):
        self.info = info
        self.exemplars = tuple(exemplars)

    @property
    def version(self) -> str:
        return self.info.version

    def for_item(
        self,
        modality: Modality,
        question_types: Sequence[QuestionType] = (),
        k: int = 3,
        exclude_datasets: Sequence[str] | None = (),
    ) -> list[Exemplar]:
        """At most ``k`` exemplars of ``modality`` (of ``question_types`` when given and the bank has
        some of them; else of any type), taken round-robin across question types, best first, so one
        type does not crowd out the others. Exemplars from ``exclude_datasets`` and restricted ones are
        never shown (``exclude_datasets=None``: restricted ones are shown too: allow_restricted)."""
        if exclude_datasets is None:
            pool = [e for e in self.exemplars if e.modality is modality]
        else:
            pool = [e for e in self.exemplars if e.modality is modality and not e.restricted
                    and e.source_dataset not in exclude_datasets]
        wanted = [e for e in pool if e.question_type in question_types]
        pool = wanted or pool
        by_type: dict[QuestionType, list[Exemplar]] = {}
        for e in _rank(pool):
            by_type.setdefault(e.question_type, []).append(e)
        order = sorted(by_type, key=lambda q: (-by_type[q][0].reward, q.value))
        out: list[Exemplar] = []
        depth = 0
        while len(out) < k and any(depth < len(v) for v in by_type.values()):
            out += [by_type[q][depth] for q in order if depth < len(by_type[q])][: k - len(out)]
            depth += 1
        return out


def load_bank(path: str | Path) -> ExemplarBank:
    """A bank version: ``path`` is a version folder (``…/v002``) or a bank folder (its newest
    complete version). Raises ``ValueError`` naming what is missing."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"exemplar bank {str(path)!r} does not exist (write one with update_bank or the "
                         "generator-update stage, or unset exemplar_bank)")
    if not (path / BANK_JSON).is_file():
        versions = _versions(path)
        if not versions:
            raise ValueError(
                f"{str(path)!r} is not an exemplar bank: it has no {BANK_JSON} and no complete version folder "
                "(v001/ with bank.json)"
            )
        path = versions[-1][1]
    data = read_json(path / BANK_JSON)
    info = BankInfo.model_validate({**data, "path": str(path)})
    exemplars = read_jsonl(path / EXEMPLARS, Exemplar) if (path / EXEMPLARS).is_file() else []
    if len(exemplars) != info.total:
        raise ValueError(f"{path / EXEMPLARS}: {len(exemplars)} exemplar(s) but {BANK_JSON} says {info.total}; "
                         "the folder is damaged: rerun the update that wrote it")
    return ExemplarBank(info, exemplars)


def parse_question_types(text: str | None) -> list[QuestionType]:
    """Question types named in a seed item's ``question_types`` label ("disease diagnosis, lesion
    grading"); unknown names are ignored."""
    out = []
    for part in (text or "").split(","):
        value = part.strip().lower().replace(" ", "_").replace("-", "_")
        if value in QuestionType._value2member_map_:
            out.append(QuestionType(value))
    return out


def render_exemplars(exemplars: Sequence[Exemplar], modality_label: str, max_chars: int = 600) -> str:
    """The few-shot block of a prompt (text only). Empty when there are no exemplars."""
    if not exemplars:
        return ""

    def one_line(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    lines = [
        (f"\nExamples of high-quality questions written earlier for other {modality_label} images (their images "
         "are not attached; do not copy them, write a new question about the attached image):")
    ]
    for n, e in enumerate(exemplars, 1):
        opts = " | ".join(f"{chr(65 + i)}. {one_line(o)}" for i, o in enumerate(e.options))
        lines += [
            f"Example {n} ({e.question_type.label.lower()}):",
            f"  Question: {one_line(e.question)}",
            f"  Options: {opts}",
            f"  Answer: {one_line(e.answer)}",
            f"  Rationale: {one_line(e.rationale) or '(none)'}",
        ]
    return "\n".join(lines) + "\n\n"


class ExemplarBankUpdater:
    """The plugin side of the proposed ``generator_updater`` kind for API generators:
    ``update(kept, context) -> {"version", "options", "path", "counts", "added"}``.

    Writes version ``v<cycle>`` (``context.cycle``; the next free one outside the loop) under
    ``options.bank_dir`` (default: ``context.work_dir``, which must then be the same folder every
    cycle) and returns the generator options that make the next cycle use it.
    """

    def __init__(self, options: Any = None):
        from medgr2_generation.options import ExemplarUpdaterOptions

        self.options = options if options is not None else ExemplarUpdaterOptions()

    def update(self, kept: Sequence[VQASample], context: Any) -> dict[str, Any]:
        bank_dir = Path(self.options.bank_dir) if self.options.bank_dir else Path(context.work_dir)
        info = update_bank(
            kept, bank_dir, per_cell=self.options.per_cell,
            version=context.cycle or None, source_cycle=context.cycle,
        )
        return {
            "version": info.version,
            "path": info.path,
            "counts": dict(info.counts),
            "added": info.added,
            "options": {"exemplar_bank": info.path, "exemplars_per_prompt": self.options.exemplars_per_prompt},
        }
