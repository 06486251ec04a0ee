"""The data stage: load seed data from several sources, pick splits, export to OmniMedVQA's layout.

Functions here use only the registry and the data objects (no plugin imports), so any
registered :class:`~medgr2.interfaces.DatasetSource` works with them.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medgr2.data import LETTERS, Modality, QuestionType, Reject, SeedItem, VQASample, stable_hash
from medgr2.interfaces import SeedSet

if TYPE_CHECKING:
    from medgr2.config import DatasetSpec
    from medgr2.progress import Reporter
    from medgr2.registry import Registry

OMNIMEDVQA_MODALITY_TYPES: dict[Modality, str] = {
    Modality.CT: "CT(Computed Tomography)",
    Modality.MRI: "MR (Mag-netic Resonance Imaging)",
    Modality.XRAY: "X-Ray",
    Modality.ULTRASOUND: "Ultrasound",
    Modality.DERMOSCOPY: "Dermoscopy",
    Modality.FUNDUS: "Fundus Photography",
    Modality.OCT: "OCT (Optical Coherence Tomography",
    Modality.MICROSCOPY: "Microscopy Images",
    Modality.OTHER: "Other",
}
"""``modality_type`` strings exactly as the official OmniMedVQA files spell them (typos included)."""

OMNIMEDVQA_QUESTION_TYPES: dict[QuestionType, str] = {qt: qt.label for qt in QuestionType}
"""``question_type`` strings of the official files ("Modality Recognition" ...)."""


def _spec_parts(spec: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, dict):
        return spec["name"], dict(spec.get("options") or {})
    return spec.name, dict(spec.options)


CONTENT_DUPLICATE = "content_duplicate"
"""Reject reason of a *warning*: a ready-made question with the same content as another one
(same images, question, options and answer) but its own question id. It is kept, not dropped."""

WARNING_REASONS = frozenset({CONTENT_DUPLICATE})
"""Reasons of entries in ``SeedSet.rejects`` that report something kept (warnings), not refused."""


def _question_key(s: VQASample) -> tuple[str, str, str]:
    return (s.provenance.source_dataset, s.provenance.source_id, s.provenance.generator)


def _question_name(s: VQASample) -> str:
    p = s.provenance
    return f"{p.source_dataset or '?'}/{p.source_id or s.id}"


def keep_every_question(
    samples: Iterable[VQASample], seen: dict[str, VQASample] | None = None, source: str = ""
) -> tuple[list[VQASample], list[Reject]]:
    """Ready-made (benchmark) samples with distinct ids, none dropped for sharing content.

    A sample's default id is a hash of its content, so two question ids with byte-identical
    images and text would share one id. Here the later one gets an id of its own (the content id
    hashed with its source dataset and question id) and a warning (reason
    :data:`CONTENT_DUPLICATE`) is reported; both count in an evaluation. Only the same question
    seen twice (same source dataset and question id, same content) is dropped, as ``duplicate``.
    ``seen`` (id -> sample, updated in place) carries the ids taken so far across calls.
    """
    seen = {} if seen is None else seen
    kept: list[VQASample] = []
    notes: list[Reject] = []
    where = f"source {source}" if source else "this source"
    for s in samples:
        first = seen.get(s.id)
        if first is not None and _question_key(first) != _question_key(s):
            other = first
            s = s.model_copy(update={"id": stable_hash(s.id, *_question_key(s))})
            first = seen.get(s.id)
            if first is None:
                notes.append(Reject(
                    stage="data", id=s.id, reason=CONTENT_DUPLICATE,
                    detail=(f"warning (kept): question {_question_name(s)} has the same image(s), question, "
                            f"options and answer as question {_question_name(other)} (sample {other.id}); "
                            "both are kept and counted"),
                ))
        if first is not None:
            notes.append(Reject(stage="data", id=s.id, reason="duplicate",
                                detail=f"question {_question_name(s)} was already loaded ({where})"))
            continue
        seen[s.id] = s
        kept.append(s)
    return kept, notes


def load_seed(
    specs: Sequence[DatasetSpec | dict[str, Any]],
    registry: Registry | None = None,
    reporter: Reporter | None = None,
) -> SeedSet:
    """Load and merge several dataset sources (writes nothing).

    Items whose id was already loaded by an earlier source are dropped into the rejects (reason
    ``duplicate``). Ready-made samples (benchmarks) are never dropped for sharing content with
    another question: :func:`keep_every_question` gives them ids of their own and reports a
    warning (reason :data:`CONTENT_DUPLICATE`); only the same question loaded twice is dropped.
    Every source keeps its own splits.
    """
    from medgr2.plugins import ensure_registry

    registry = ensure_registry(registry)
    if reporter is None:
        from medgr2.progress import SilentReporter

        reporter = SilentReporter()
    items: list[SeedItem] = []
    samples: list[VQASample] = []
    rejects: list[Reject] = []
    seen_items: set[str] = set()
    seen_samples: dict[str, VQASample] = {}
    with reporter.task("load data", total=len(specs)) as task:
        for spec in specs:
            name, options = _spec_parts(spec)
            loaded = registry.create("dataset", name, options).load()
            for it in loaded.items:
                if it.id in seen_items:
                    rejects.append(
                        Reject(stage="data", id=it.id, reason="duplicate", detail=f"source {name}")
                    )
                else:
                    seen_items.add(it.id)
                    items.append(it)
            kept, notes = keep_every_question(loaded.samples, seen_samples, name)
            samples.extend(kept)
            rejects.extend(loaded.rejects)
            rejects.extend(notes)
            task.advance(
                1, items=len(loaded.items), samples=len(loaded.samples), rejected=len(loaded.rejects)
            )
    return SeedSet(items=tuple(items), samples=tuple(samples), rejects=tuple(rejects))


def summarize(seed: SeedSet, samples: Sequence[VQASample] = ()) -> dict[str, Any]:
    """Counts for ``medgr2 data inspect``: per split, modality, dataset, class, question type, rejects.

    ``rejects`` counts what was refused; ``warnings`` what was kept with a warning (content
    duplicates among benchmark questions); ``rejects_by_reason`` lists both by reason.

    ``samples`` adds generated questions to the source's own ready-made samples.
    """
    all_samples = [*seed.samples, *samples]
    records: list[tuple[str | None, str, str]] = [
        (it.split, it.modality.value, it.dataset) for it in seed.items
    ]
    if not seed.items:
        records = [(s.split, s.modality.value, s.provenance.source_dataset) for s in all_samples]
    classes: Counter[str] = Counter(it.labels["diagnosis"] for it in seed.items if "diagnosis" in it.labels)
    if not seed.items:
        classes = Counter(s.answer for s in all_samples if s.question_type is QuestionType.DISEASE_DIAGNOSIS)
    return {
        "total": len(records),
        "items": len(seed.items),
        "samples": len(all_samples),
        "subjects": len({it.subject_id or it.id for it in seed.items}),
        "by_split": dict(Counter(str(r[0]) for r in records)),
        "by_modality": dict(Counter(r[1] for r in records)),
        "by_dataset": dict(Counter(r[2] for r in records)),
        "by_class": dict(classes.most_common()),
        "by_question_type": dict(Counter(s.question_type.value for s in all_samples)),
        "rejects": sum(r.reason not in WARNING_REASONS for r in seed.rejects),
        "warnings": sum(r.reason in WARNING_REASONS for r in seed.rejects),
        "rejects_by_reason": dict(Counter(r.reason for r in seed.rejects)),
    }


@dataclass
class ExportResult:
    """What :func:`export_omnimedvqa` wrote."""

    root: Path
    samples: int = 0
    images: int = 0
    files: list[Path] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w\- ]+", "_", name).strip() or "medgr2"


def export_omnimedvqa(
    samples: Sequence[VQASample],
    out_dir: str | Path,
    registry: Registry | None = None,
    dataset: str | None = None,
) -> ExportResult:
    """Write ``samples`` in the official OmniMedVQA layout under ``out_dir``.

    ``QA_information/Open-access/<Dataset>.json`` (one file per source dataset, or all under
    ``dataset`` when given) and ``Images/<Dataset>/<image hash>.png``. Records carry the official
    keys plus ``rationale`` and ``split`` (ignored by other kits, read back by ``omnimedvqa``).
    Images that cannot be decoded are skipped with their samples, as rejects.
    """
    from medgr2.images import open_image
    from medgr2.store import atomic_write_bytes, write_json

    from medgr2.plugins import ensure_registry

    registry = ensure_registry(registry)
    root = Path(out_dir)
    result = ExportResult(root=root)
    groups: dict[str, list[VQASample]] = {}
    for s in samples:
        groups.setdefault(_safe_name(dataset or s.provenance.source_dataset or "medgr2"), []).append(s)
    for name, members in sorted(groups.items()):
        written: dict[str, str | None] = {}
        records = []
        for s in members:
            ref = s.images[0]
            if ref.key not in written:
                rel = f"Images/{name}/{ref.key[:24]}.png"
                try:
                    buf = io.BytesIO()
                    open_image(ref, registry).save(buf, format="PNG")
                    atomic_write_bytes(root / rel, buf.getvalue())
                    written[ref.key] = rel
                    result.images += 1
                except Exception as exc:  # noqa: BLE001 - an undecodable image skips its samples
                    written[ref.key] = None
                    result.rejects.append(
                        Reject(
                            stage="export",
                            id=ref.path,
                            reason="unreadable",
                            detail=f"{type(exc).__name__}: {exc}"[:500],
                        )
                    )
            rel = written[ref.key]
            if rel is None:
                continue
            record: dict[str, Any] = {
                "dataset": s.provenance.source_dataset or name,
                "question_id": s.id,
                "question_type": OMNIMEDVQA_QUESTION_TYPES[s.question_type],
                "question": s.question,
                "gt_answer": s.answer,
                "image_path": rel,
                "modality_type": OMNIMEDVQA_MODALITY_TYPES[s.modality],
            }
            record.update({f"option_{letter}": o for letter, o in zip(LETTERS, s.options)})
            if s.rationale:
                record["rationale"] = s.rationale
            if s.split:
                record["split"] = s.split
            records.append(record)
        path = root / "QA_information" / "Open-access" / f"{name}.json"
        write_json(path, records)
        result.files.append(path)
        result.samples += len(records)
    return result
