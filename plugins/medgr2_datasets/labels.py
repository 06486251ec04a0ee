"""The offline question builder ``labels``: OmniMedVQA-style multiple choice from labels.

For each seed item it lists the *facts* its labels support — modality (modality recognition),
organs in the slice or body region (anatomy identification), ``diagnosis`` (disease diagnosis),
``grade`` (lesion grading), age band / sex / body site (other biological attributes) — and turns
up to ``per_item`` of them, spread over question types, into questions. Distractors come from
the dataset's own label space (collected over the items given), topped up from a fixed
vocabulary; options are shuffled with a seeded RNG; each sample carries a short rationale that
states the label. With ``defects`` rates above 0 it also spoils shares of its samples the way LLM
generators fail and records the kind in ``provenance.raw["defect"]`` (see
:mod:`medgr2_datasets.defects`). The builder is deterministic for a given seed and cycle, so calling it again
redoes exactly the same (cheap) work: that is how it is resumable.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from medgr2.data import (
    GenerationResult,
    Ledger,
    Modality,
    Provenance,
    QuestionType,
    Reject,
    SeedItem,
    VQASample,
    evolve,
    stable_hash,
)
from medgr2.interfaces import StageContext
from medgr2_datasets.defects import SUPPORT, apply_defects
from medgr2_datasets.options import LabelsOptions
from medgr2_datasets.vocab import FALLBACK_SPACES, MODALITY_VOCAB, age_band, normalise_sex, readable

VERSION = "1"

QT = QuestionType
TEMPLATES: dict[str, tuple[str, ...]] = {
    "modality": (
        "What imaging modality was used to acquire this image?",
        "Which imaging technique produced this image?",
        "What kind of medical image is this?",
        "Identify the modality of this medical image.",
    ),
    "organs": (
        "Which of the following organs is visible in this {modality} slice?",
        "Which anatomical structure can be seen in this {modality} image?",
        "Which of these organs appears in this {modality} image?",
    ),
    "body_part": (
        "Which body region is shown in this {modality} image?",
        "What part of the body does this {modality} image depict?",
        "Which anatomical region was imaged here?",
    ),
    "diagnosis": (
        "What is the most likely diagnosis for this {modality} image?",
        "Which finding best describes this image?",
        "Based on the image, which diagnosis is most likely?",
        "What does this {modality} image most likely show?",
    ),
    "grade": (
        "What is the grade of the lesion in this image?",
        "Which grade best describes the lesion shown?",
        "How would the severity of this lesion be graded?",
    ),
    "age": (
        "What is the most likely age range of this patient?",
        "Which age group does this patient most likely belong to?",
    ),
    "sex": (
        "What is the sex of this patient?",
        "Was this image taken from a male or a female patient?",
    ),
    "site": (
        "On which body site is this lesion located?",
        "Where on the body was this lesion imaged?",
    ),
}
"""Paraphrased question templates per fact kind."""

RATIONALES: dict[str, str] = {
    "modality": "The image was acquired with {answer}, the modality recorded for the {dataset} dataset.",
    "organs": "The organ segmentation of this slice contains the {answer}.",
    "body_part": "The image metadata records the imaged body region as {answer}.",
    "diagnosis": "The {dataset} label of this image is {answer}.",
    "grade": "The {dataset} annotation grades this lesion as {answer}.",
    "age": "The recorded patient age falls in the {answer} range.",
    "sex": "The metadata records the patient's sex as {answer}.",
    "site": "The recorded location of this lesion is the {answer}.",
}
"""One rationale template per fact kind, grounded in the label."""

TEMPLATE_HASHES: dict[str, str] = {t: stable_hash(t) for ts in TEMPLATES.values() for t in ts}

KIND_TYPE: dict[str, QuestionType] = {
    "modality": QT.MODALITY_RECOGNITION,
    "organs": QT.ANATOMY_IDENTIFICATION,
    "body_part": QT.ANATOMY_IDENTIFICATION,
    "diagnosis": QT.DISEASE_DIAGNOSIS,
    "grade": QT.LESION_GRADING,
    "age": QT.OTHER_BIOLOGICAL_ATTRIBUTES,
    "sex": QT.OTHER_BIOLOGICAL_ATTRIBUTES,
    "site": QT.OTHER_BIOLOGICAL_ATTRIBUTES,
}


@dataclass(frozen=True)
class Fact:
    """One question an item's labels support: its kind, the right answer(s), and what to avoid."""

    kind: str
    answer: str
    exclude: frozenset[str] = frozenset()


class LabelsGenerator:
    """Builds multiple-choice VQA samples of all five OmniMedVQA question types from labels."""

    def __init__(self, options: LabelsOptions | None = None):
        self.options = options or LabelsOptions()

    # ------------------------------------------------------------------ facts and label spaces

    def facts(self, item: SeedItem) -> list[Fact]:
        """The facts ``item``'s labels support, restricted to the configured question types."""
        o, lab, out = self.options, item.labels, []
        if item.modality is not Modality.OTHER:
            out.append(Fact("modality", item.modality.label))
        organs = [x.strip() for x in lab.get("organs", "").split(",") if x.strip()]
        if organs:
            pick = organs[int(stable_hash(item.id, "organ"), 16) % len(organs)]
            out.append(Fact("organs", pick, frozenset(organs)))
        if lab.get("body_part"):
            out.append(Fact("body_part", lab["body_part"]))
        if lab.get("diagnosis"):
            out.append(Fact("diagnosis", readable(lab["diagnosis"], item.dataset, o.class_names)))
        if lab.get("grade"):
            out.append(Fact("grade", readable(lab["grade"], item.dataset, o.class_names)))
        band = age_band(lab.get("age", ""))
        if band:
            out.append(Fact("age", band))
        sex = normalise_sex(lab.get("sex", ""))
        if sex:
            out.append(Fact("sex", sex))
        if lab.get("site"):
            out.append(Fact("site", lab["site"]))
        wanted = set(o.question_types)
        return [f for f in out if KIND_TYPE[f.kind] in wanted]

    def spaces(self, items: Sequence[SeedItem]) -> dict[tuple[str, str], list[str]]:
        """Per (dataset, fact kind): the sorted label space seen over ``items``."""
        seen: dict[tuple[str, str], set[str]] = defaultdict(set)
        for it in items:
            for f in self.facts(it):
                seen[(it.dataset, f.kind)].update(f.exclude or {f.answer})
        return {k: sorted(v) for k, v in seen.items()}

    # ------------------------------------------------------------------------ sample building

    def _options(
        self, fact: Fact, dataset: str, spaces: dict[tuple[str, str], list[str]], rng: random.Random
    ) -> list[str] | None:
        taken = {fact.answer.strip().lower()} | {x.strip().lower() for x in fact.exclude}
        pool: list[str] = []
        want = self.options.max_options - 1
        own = spaces.get((dataset, fact.kind), [])
        extra = MODALITY_VOCAB if fact.kind == "modality" else FALLBACK_SPACES.get(fact.kind, ())
        for candidates in (own, extra):
            if len(pool) >= want:
                break
            for x in candidates:  # unique case-insensitively, as VQASample requires
                if x.strip() and x.strip().lower() not in taken:
                    taken.add(x.strip().lower())
                    pool.append(x)
        if not pool:
            return None
        options = [fact.answer, *rng.sample(pool, min(want, len(pool)))]
        rng.shuffle(options)
        return options

    def _sample(
        self,
        item: SeedItem,
        fact: Fact,
        spaces: dict[tuple[str, str], list[str]],
        rng: random.Random,
        base: Provenance,
    ) -> VQASample | None:
        options = self._options(fact, item.dataset, spaces, rng)
        if options is None:
            return None
        template = rng.choice(TEMPLATES[fact.kind])
        modality = item.modality.label if item.modality is not Modality.OTHER else "medical"
        rationale = RATIONALES[fact.kind].format(answer=fact.answer, dataset=item.dataset)
        share = self.options.closing_share
        if share > 0:  # its own draw, so the other draws stay as they were
            draw = random.Random(stable_hash(base.seed, base.cycle, item.id, fact.kind, "closing")).random()
            rationale += SUPPORT.format(wrong=fact.answer) if draw < share else ""
        return VQASample(
            images=(item.image,),
            question=template.format(modality=modality),
            options=tuple(options),
            answer=fact.answer,
            rationale=rationale,
            modality=item.modality,
            question_type=KIND_TYPE[fact.kind],
            provenance=base.model_copy(
                update={
                    "source_dataset": item.dataset,
                    "source_id": item.id,
                    "template_hash": TEMPLATE_HASHES[template],
                    "raw": {"kind": fact.kind},
                }
            ),
            split=item.split,
            subject_id=item.subject_id,
        )

    def _pick(self, facts: list[Fact], rng: random.Random) -> list[Fact]:
        """Up to ``per_item`` facts, spread over question types (round robin in a seeded order)."""
        by_type: dict[QuestionType, list[Fact]] = defaultdict(list)
        for f in facts:
            by_type[KIND_TYPE[f.kind]].append(f)
        order = sorted(by_type, key=lambda t: t.value)
        rng.shuffle(order)
        for t in order:
            rng.shuffle(by_type[t])
        picked: list[Fact] = []
        while len(picked) < self.options.per_item and any(by_type.values()):
            for t in order:
                if by_type[t] and len(picked) < self.options.per_item:
                    picked.append(by_type[t].pop())
        return picked

    def generate(self, items: Sequence[SeedItem], context: StageContext) -> GenerationResult:
        """Build questions for ``items`` (see the module docstring); stops early on ``context.stop``."""
        started = time.perf_counter()
        o = self.options
        seed = context.seed if o.seed is None else o.seed
        spaces = self.spaces(items)
        base = Provenance(
            generator="labels",
            generator_version=VERSION,
            prompt_strategy="labels",
            cycle=context.cycle,
            seed=seed,
        )
        samples: list[VQASample] = []
        rejects: list[Reject] = []
        with context.reporter.task("labels", total=len(items)) as task:
            for n, item in enumerate(items):
                if context.stop.is_set():
                    break
                rng = random.Random(stable_hash(seed, context.cycle, item.id))
                made, failed = [], False
                for fact in self._pick(self.facts(item), rng):
                    try:
                        sample = self._sample(item, fact, spaces, rng, base)
                    except ValidationError as exc:  # one bad label must not stop the run
                        rejects.append(
                            Reject(
                                stage="generate",
                                id=item.id,
                                reason="invalid_sample",
                                detail=str(exc.errors()[0].get("msg", exc))[:300],
                            )
                        )
                        failed = True
                        continue
                    if sample is not None:
                        made.append(sample)
                if not made and not failed:
                    rejects.append(
                        Reject(
                            stage="generate",
                            id=item.id,
                            reason="no_question",
                            detail="no label supports a question of the requested types",
                        )
                    )
                samples.extend(made)
                if n % 256 == 255:
                    task.advance(256)
            task.advance(len(items) % 256)
        samples = self._balance(samples, seed)
        samples = self._add_noise(samples, seed, context.cycle)
        rates = o.defects.model_dump()
        samples, defects = apply_defects(
            samples, rates, seed, context.cycle, RATIONALES, record=o.label_noise > 0 or any(rates.values())
        )
        extra = {"generator": "labels", "noisy": sum("noisy" in s.tags for s in samples)}
        if o.label_noise > 0 or any(rates.values()):
            extra["defects"] = defects
        ledger = Ledger(
            stage="generate",
            successes=len(samples),
            rejects=dict(Counter(r.reason for r in rejects)),
            wall_s=time.perf_counter() - started,
            extra=extra,
        )
        return GenerationResult(samples=tuple(samples), rejects=tuple(rejects), ledger=ledger)

    def _balance(self, samples: list[VQASample], seed: int) -> list[VQASample]:
        o = self.options
        if not o.balance_classes and o.max_per_class is None:
            return samples
        groups: dict[tuple[str, str], dict[str, list[VQASample]]] = defaultdict(lambda: defaultdict(list))
        for s in samples:
            groups[(s.provenance.source_dataset, s.question_type.value)][s.answer].append(s)
        keep: set[str] = set()
        for classes in groups.values():
            cap = min(len(v) for v in classes.values()) if o.balance_classes else None
            if o.max_per_class is not None:
                cap = o.max_per_class if cap is None else min(cap, o.max_per_class)
            for members in classes.values():
                ranked = sorted(members, key=lambda s: stable_hash(seed, s.id))
                keep.update(s.id for s in ranked[:cap])
        return [s for s in samples if s.id in keep]

    def _add_noise(self, samples: list[VQASample], seed: int, cycle: int) -> list[VQASample]:
        """Set the answer of ``label_noise`` × N samples to a wrong option, tagged ``noisy``."""
        n = round(len(samples) * self.options.label_noise)
        if n == 0:
            return samples
        rng = random.Random(stable_hash(seed, cycle, "noise"))
        chosen = set(rng.sample(range(len(samples)), n))
        out = []
        for i, s in enumerate(samples):
            if i in chosen:
                wrong = rng.choice([x for x in s.options if x != s.answer])
                kind = s.provenance.raw.get("kind", "diagnosis")
                s = evolve(
                    s,
                    answer=wrong,
                    tags=(*s.tags, "noisy"),
                    provenance=s.provenance.model_copy(
                        update={"raw": {**s.provenance.raw, "true_answer": s.answer}}
                    ),
                    rationale=RATIONALES.get(kind, RATIONALES["diagnosis"]).format(
                        answer=wrong, dataset=s.provenance.source_dataset
                    ),
                )
            out.append(s)
        return out
