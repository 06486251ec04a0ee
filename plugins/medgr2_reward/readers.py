"""Readers of reference texts for the graded reward data.

A :class:`Reference` is one correct answer to grade: a context ``question``, the reference
``text`` (a report, an answer), an optional ``rationale`` and image, the ``group_id`` that keeps
a study on one side of the split, and ``findings`` (normalised labels) used to pick a donor with
*different* findings for grade 4.

Readers: IU X-ray / OpenI XML (a ``.tgz`` read in place, a folder or one file), plain text (one
reference per line), CSV columns, VQA samples (answer + rationale) and seed items with text.
"""

from __future__ import annotations

import csv
import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from pydantic import Field

from medgr2.data import Frozen, ImageRef, Modality, SeedItem, VQASample

REPORT_QUESTION = "Describe the findings and the impression of this {modality} study."
UNLABELLED = "unlabelled"
"""The ``findings`` of a reference whose findings are not known (e.g. MeSH "No Indexing")."""


class Reference(Frozen):
    """One correct reference answer, the seed of four graded examples."""

    group_id: str = Field(min_length=1, description="Report/study/subject id: one split side per group.")
    question: str = Field(description="The context the answer responds to.")
    text: str = Field(min_length=1, description="The reference answer text (the part perturbed).")
    rationale: str = Field(default="", description="A rationale kept with the answer (perturbed when present).")
    image: ImageRef | None = None
    modality: Modality = Modality.OTHER
    findings: tuple[str, ...] = Field(default=(), description="Normalised finding labels (donor choice).")
    options: tuple[str, ...] = Field(default=(), description="Answer options when the reference is a VQA sample.")
    source: str = ""


class ReaderError(ValueError):
    """A reference file cannot be read; the message names the file and the fix."""


def _clean(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def parse_iu_report(xml: bytes | str, name: str = "") -> Reference | None:
    """Parse one IU X-ray (OpenI) report; ``None`` when it has neither FINDINGS nor IMPRESSION.

    The question carries the study's indication and MeSH terms (standing in for the image, which
    a text-only grade set does not have); ``findings`` are the MeSH main headings, lower case.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ReaderError(f"{name or 'report'}: not valid XML ({exc})") from exc
    sections = {
        (el.get("Label") or "").upper(): _clean(el.text) for el in root.iter("AbstractText")
    }
    findings, impression = sections.get("FINDINGS", ""), sections.get("IMPRESSION", "")
    if not findings and not impression:
        return None
    report_id = ""
    for tag in ("uId", "IUXRId", "pmcId"):
        el = root.find(tag)
        if el is not None and el.get("id"):
            report_id = el.get("id", "")
            break
    report_id = report_id or Path(name).stem
    mesh = [_clean(el.text) for el in root.iter("major") if _clean(el.text)]
    # "No Indexing" says the indexers did not label the study: its findings are unknown, not absent.
    heads = tuple(sorted({m.split("/")[0].strip().lower() for m in mesh} - {"no indexing"}))
    context = REPORT_QUESTION.format(modality="chest X-ray")
    if sections.get("INDICATION"):
        context += f" Indication: {sections['INDICATION']}."
    if mesh:
        context += f" MeSH: {'; '.join(mesh)}."
    text = " ".join(p for p in (f"Findings: {findings}" if findings else "",
                                f"Impression: {impression}" if impression else "") if p)
    return Reference(group_id=f"iu:{report_id}", question=context, text=text, modality=Modality.XRAY,
                     findings=heads or (UNLABELLED,), source="iu_xray")


def read_iu_xray(path: str | Path, limit: int | None = None) -> tuple[list[Reference], int]:
    """Read IU X-ray reports from a ``.tgz``/``.tar.gz`` (in place), a folder of XML or one XML.

    Returns:
        (references, skipped): reports without FINDINGS and IMPRESSION are skipped and counted.
    """
    path = Path(path)
    if not path.exists():
        raise ReaderError(f"IU X-ray reports not found at {path}: point `path` at NLMCXR_reports.tgz "
                          "or a folder of its XML files.")
    refs: list[Reference] = []
    skipped = 0
    for name, blob in _iter_xml(path):
        ref = parse_iu_report(blob, name)
        if ref is None:
            skipped += 1
        else:
            refs.append(ref)
        if limit is not None and len(refs) >= limit:
            break
    if not refs and not skipped:
        raise ReaderError(f"{path} holds no XML report")
    return refs, skipped


def _iter_xml(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        for f in sorted(path.rglob("*.xml")):
            yield f.name, f.read_bytes()
    elif path.suffix == ".xml":
        yield path.name, path.read_bytes()
    else:
        try:
            with tarfile.open(path, "r:*") as tar:
                members = sorted((m for m in tar if m.isfile() and m.name.endswith(".xml")),
                                 key=lambda m: _natural_key(m.name))
                for m in members:
                    fh = tar.extractfile(m)
                    if fh is not None:
                        yield m.name, fh.read()
        except tarfile.TarError as exc:
            raise ReaderError(f"{path} is neither an XML file, a folder nor a tar archive ({exc})") from exc


def _natural_key(name: str) -> tuple[str, int]:
    m = re.search(r"(\d+)\.xml$", name)
    return (name[: m.start()] if m else name, int(m.group(1)) if m else -1)


def read_text_lines(path: str | Path, question: str, modality: Modality = Modality.OTHER,
                    limit: int | None = None) -> list[Reference]:
    """One reference per non-empty line of a UTF-8 text file (each line its own group)."""
    path = Path(path)
    if not path.is_file():
        raise ReaderError(f"text file {path} does not exist")
    refs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            refs.append(Reference(group_id=f"{path.stem}:{n}", question=question, text=line.strip(),
                                  modality=modality, source="text"))
        if limit is not None and len(refs) >= limit:
            break
    return refs


def read_csv(path: str | Path, text_columns: Sequence[str], *, id_column: str | None = None,
             question: str = "", question_column: str | None = None, findings_column: str | None = None,
             modality: Modality = Modality.OTHER, limit: int | None = None) -> list[Reference]:
    """References from CSV columns: ``text_columns`` joined make the text.

    ``id_column`` groups rows (default: the row number); ``question_column`` gives a per-row
    context (else ``question``); ``findings_column`` labels rows for donor choice.
    """
    path = Path(path)
    if not path.is_file():
        raise ReaderError(f"CSV file {path} does not exist")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        wanted = [*text_columns, *(c for c in (id_column, question_column, findings_column) if c)]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise ReaderError(f"{path}: no column(s) {missing}; the header has {header}")
        refs = []
        for n, row in enumerate(reader, 1):
            text = " ".join(_clean(row[c]) for c in text_columns if _clean(row[c]))
            if not text:
                continue
            label = _clean(row[findings_column]).lower() if findings_column else ""
            refs.append(Reference(
                group_id=f"{path.stem}:{row[id_column] if id_column else n}",
                question=_clean(row[question_column]) if question_column else question,
                text=text, modality=modality, findings=(label,) if label else (), source="csv"))
            if limit is not None and len(refs) >= limit:
                break
    return refs


def from_samples(samples: Iterable[VQASample]) -> list[Reference]:
    """References from VQA samples: the answer (and rationale) answer the question and options.

    Samples of one subject (or, without one, one image) share a group.
    """
    refs = []
    for s in samples:
        group = s.subject_id or s.images[0].key
        refs.append(Reference(
            group_id=f"{s.provenance.source_dataset or 'samples'}:{group}",
            question=s.question + "\n" + s.options_text(), text=s.answer, rationale=s.rationale,
            image=s.images[0], modality=s.modality, findings=(s.answer.strip().lower(),),
            options=s.options, source="samples"))
    return refs


def from_seed_items(items: Iterable[SeedItem], question: str = REPORT_QUESTION) -> list[Reference]:
    """References from seed items that carry free text (a report or note); others are ignored."""
    refs = []
    for it in items:
        if not (it.text and it.text.strip()):
            continue
        labels = tuple(sorted(v.strip().lower() for k, v in it.labels.items()
                              if k in ("diagnosis", "grade", "finding") and v.strip()))
        refs.append(Reference(
            group_id=f"{it.dataset}:{it.subject_id or it.id}",
            question=question.format(modality=it.modality.label), text=_clean(it.text), image=it.image,
            modality=it.modality, findings=labels, source=it.dataset))
    return refs
