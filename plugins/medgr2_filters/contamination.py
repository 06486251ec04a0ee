"""``contamination``: drop samples that overlap an evaluation set (text n-grams or images).

The evaluation set comes from JSONL files of VQASamples, OmniMedVQA-layout roots
(``QA_information/<access>/<Dataset>.json`` arrays whose ``image_path`` is relative to the root),
and ``context.eval_samples`` (the loop passes its evaluation samples there).

A sample is contaminated when its question + options + answer shares a word ``ngram``-gram with an
evaluation item, or when one of its images has the same file hash as, or a perceptual hash within
``image_max_distance`` bits of, an evaluation image. Perceptual lookups use bit-band buckets
(pigeonhole), not all pairs. What was removed is written to ``contamination.json`` in the
stage's work dir.

Texts shorter than ``ngram`` words have no n-gram: by default (``short_texts: skip``) only their
images are checked, since templated questions ("What modality is used to take this image?") are
shared by training and evaluation sets without the items being the same; ``short_texts: whole``
makes such a text one gram of its whole length (question, options and answer must all match).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medgr2.data import LETTERS, FilterDecision, ImageRef, VQASample
from medgr2.interfaces import StageContext
from medgr2.store import read_jsonl, write_json
from medgr2_filters.imagehash import HASH_BITS, ImageHasher
from medgr2_filters.keys import decide, ngrams, reward_or_none, words
from medgr2_filters.options import ContaminationOptions

REPORT_FILE = "contamination.json"


@dataclass(frozen=True)
class EvalItem:
    """One evaluation item as the filter sees it: an id, its text and its images."""

    id: str
    text: str
    images: tuple[ImageRef, ...] = ()


def sample_text(question: str, options: Sequence[str], answer: str) -> str:
    """The text compared against the evaluation set: question, options and answer."""
    return " ".join([question, *options, answer])


def _from_samples(samples: Sequence[VQASample], source: str) -> Iterator[EvalItem]:
    for s in samples:
        yield EvalItem(f"{source}:{s.id}", sample_text(s.question, s.options, s.answer), tuple(s.images))


def read_omnimedvqa(root: str | Path) -> Iterator[EvalItem]:
    """Items of an OmniMedVQA-layout root (``QA_information/*/*.json``), images relative to the root."""
    root = Path(root)
    files = sorted((root / "QA_information").glob("*/*.json"))
    if not files:
        raise ValueError(f"no OmniMedVQA QA files under {root}/QA_information/<access>/<Dataset>.json; "
                         "check the contamination filter's omnimedvqa_roots option")
    for path in files:
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path}: not a JSON array of OmniMedVQA records ({exc})") from exc
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON array of OmniMedVQA records, "
                             f"got {type(records).__name__}")
        for n, rec in enumerate(records):
            if not isinstance(rec, dict) or "question" not in rec:
                raise ValueError(f"{path}: record {n} has no 'question' field")
            options = [str(rec[f"option_{c}"]) for c in LETTERS if rec.get(f"option_{c}") not in (None, "")]
            qid = rec.get("question_id", n)
            images = ()
            if rec.get("image_path"):
                images = (ImageRef(path=str(rec["image_path"]), root=str(root), loader="file"),)
            yield EvalItem(f"{path.stem}:{qid}", sample_text(str(rec["question"]), options,
                                                            str(rec.get("gt_answer", ""))), images)


@dataclass
class EvalIndex:
    """N-gram and image indexes of an evaluation set."""

    ngram: int
    whole_if_short: bool = False
    grams: dict[int, str] = field(default_factory=dict)
    image_keys: dict[str, str] = field(default_factory=dict)
    bands: list[dict[int, list[tuple[int, str]]]] = field(default_factory=list)
    items: int = 0
    images: int = 0
    unreadable: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def add_text(self, item: EvalItem) -> None:
        """Index the n-grams of one evaluation item."""
        for g in ngrams(words(item.text), self.ngram, whole_if_short=self.whole_if_short):
            self.grams.setdefault(hash(g), item.id)

    def find_text(self, text: str) -> tuple[str, str] | None:
        """(eval id, the shared n-gram) of the first overlap, or ``None``."""
        for g in ngrams(words(text), self.ngram, whole_if_short=self.whole_if_short):
            hit = self.grams.get(hash(g))
            if hit is not None:
                return hit, " ".join(g)
        return None


def _band_values(h: int, max_distance: int) -> list[int]:
    nb = max_distance + 1
    bits = HASH_BITS // nb
    mask = (1 << bits) - 1
    return [(h >> (i * bits)) & mask for i in range(nb)]


class ContaminationFilter:
    """Drops samples whose text or images overlap the configured evaluation set."""

    name = "contamination"

    def __init__(self, options: ContaminationOptions):
        self.options = options
        self._hasher: ImageHasher | None = None

    def eval_items(self, context: StageContext) -> tuple[list[EvalItem], list[str]]:
        """Every evaluation item from the options and the context, and the source names."""
        opts, items, sources = self.options, [], []
        for p in opts.eval_paths:
            if not Path(p).is_file():
                raise ValueError(f"contamination filter: eval_paths entry {p!r} is not a file")
            items += _from_samples(read_jsonl(p, VQASample), Path(p).stem)
            sources.append(str(p))
        for root in opts.omnimedvqa_roots:
            items += read_omnimedvqa(root)
            sources.append(str(root))
        extra = context.eval_samples if opts.use_context else None
        if extra:
            items += _from_samples(list(extra), "eval")
            sources.append("context.eval_samples")
        if not items:
            raise ValueError(
                "contamination filter has no evaluation set: set its eval_paths (JSONL of VQASamples) or "
                "omnimedvqa_roots options, or pass samples in context.eval_samples")
        return items, sources

    def _hash(self, ref: ImageRef) -> int:
        assert self._hasher is not None
        return self._hasher(ref)

    def build_index(self, context: StageContext) -> EvalIndex:
        """Index the evaluation set's n-grams, image keys and perceptual hashes."""
        opts = self.options
        items, sources = self.eval_items(context)
        index = EvalIndex(opts.ngram, opts.short_texts == "whole", items=len(items), sources=sources)
        perceptual = opts.check_images and opts.image_hash != "key"
        if perceptual:
            self._hasher = ImageHasher(opts.image_hash, context.registry)
            index.bands = [{} for _ in range(opts.image_max_distance + 1)]
        assert context.reporter is not None
        with context.reporter.task("contamination: index eval set", total=len(items)) as task:
            for item in items:
                if opts.check_text:
                    index.add_text(item)
                for ref in item.images if opts.check_images else ():
                    index.images += 1
                    index.image_keys.setdefault(ref.key, item.id)
                    if perceptual:
                        try:
                            h = self._hash(ref)
                        except ValueError:
                            index.unreadable.append(item.id)
                            continue
                        for band, value in zip(index.bands, _band_values(h, opts.image_max_distance)):
                            band.setdefault(value, []).append((h, item.id))
                task.advance(1)
        return index

    def find_image(self, index: EvalIndex, ref: ImageRef) -> tuple[str, str] | None:
        """(eval id, how it matched) for an image of a sample, or ``None``."""
        hit = index.image_keys.get(ref.key)
        if hit is not None:
            return hit, "same image file"
        if not index.bands:
            return None
        h = self._hash(ref)
        best: tuple[int, str] | None = None
        for band, value in zip(index.bands, _band_values(h, self.options.image_max_distance)):
            for other, eval_id in band.get(value, ()):
                d = (h ^ other).bit_count()
                if d <= self.options.image_max_distance and (best is None or d < best[0]):
                    best = (d, eval_id)
        return None if best is None else (best[1], f"perceptual hash within {best[0]} bits")

    def apply(self, samples: Sequence[VQASample], kept: Sequence[VQASample],
              context: StageContext) -> list[FilterDecision]:
        """One decision per sample: ``clean``, ``eval_text_overlap`` or ``eval_image_overlap``."""
        opts = self.options
        index = self.build_index(context)
        out: list[FilterDecision] = []
        removed: list[dict[str, str]] = []
        for s in samples:
            r = reward_or_none(s)
            find = index.find_text(sample_text(s.question, s.options, s.answer)) if opts.check_text else None
            if find is not None:
                out.append(decide(s, self.name, False, "eval_text_overlap",
                                  f"shares the {opts.ngram}-gram {find[1]!r} with eval item {find[0]}", r))
                removed.append({"id": s.id, "kind": "text", "eval_id": find[0], "match": find[1]})
                continue
            image_hit = None
            for ref in s.images if opts.check_images else ():
                image_hit = self.find_image(index, ref)
                if image_hit is not None:
                    break
            if image_hit is not None:
                out.append(decide(s, self.name, False, "eval_image_overlap",
                                  f"image {image_hit[1]} of eval item {image_hit[0]}", r))
                removed.append({"id": s.id, "kind": "image", "eval_id": image_hit[0], "match": image_hit[1]})
                continue
            out.append(decide(s, self.name, True, "clean", f"no overlap with {index.items} eval items", r))
        self._report(context, index, len(samples), removed)
        return out

    def _report(self, context: StageContext, index: EvalIndex, checked: int,
                removed: list[dict[str, str]]) -> None:
        opts = self.options
        report = {
            "eval_set": {"sources": index.sources, "items": index.items, "ngrams": len(index.grams),
                         "images": index.images, "unreadable_images": len(index.unreadable),
                         "unreadable_ids": index.unreadable[:100]},
            "ngram": opts.ngram,
            "image_hash": opts.image_hash if opts.check_images else None,
            "image_max_distance": opts.image_max_distance,
            "checked": checked,
            "removed": len(removed),
            "removed_by_kind": {k: sum(1 for x in removed if x["kind"] == k) for k in ("text", "image")},
            "removed_ids": [x["id"] for x in removed],
            "matches": removed,
        }
        write_json(Path(context.work_dir) / REPORT_FILE, report)
        if context.reporter is not None and removed:
            context.reporter.log(f"contamination: removed {len(removed)} of {checked} samples overlapping "
                                 f"{index.items} eval items (see {REPORT_FILE})")
