"""Tutorial 2: a generator backend, ``yes_no`` (see docs/tutorials.md).

A generator turns seed items (labelled images) into VQA samples. This one is offline and
deterministic: for each item with a ``diagnosis`` label it asks whether the image shows that
finding or another one of the dataset's labels, with the rationale saying which label it used.
Items it cannot use come back as rejects with a reason (never an exception), and it honours
``context.stop`` between items. An API backend has the same shape; the built-in ``openai`` and
``gemini`` generators add the request engine (concurrency, retries, a reply cache for resume).

    medgr2 --plugin examples/tutorials/generator_backend.py generate \\
        --set generation.generator.name=yes_no --limit 6 --out runs/yes-no
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medgr2 import hookimpl
from medgr2.data import GenerationResult, Ledger, Provenance, QuestionType, Reject, SeedItem, VQASample


class YesNoOptions(BaseModel):
    """Options of the ``yes_no`` generator."""

    model_config = ConfigDict(extra="forbid")
    negative_share: float = Field(default=0.5, ge=0, le=1, description="Share of questions about another label.")


class YesNoGenerator:
    """Yes/no questions about an item's diagnosis (a :class:`medgr2.interfaces.Generator`)."""

    def __init__(self, options: YesNoOptions):
        self.options = options

    def generate(self, items: Sequence[SeedItem], context: Any) -> GenerationResult:
        started = time.perf_counter()
        labels = sorted({i.labels["diagnosis"] for i in items if i.labels.get("diagnosis")})
        samples, rejects = [], []
        for item in items:
            if context.stop.is_set():  # SIGINT/SIGTERM: return what is done; the stage records it as partial
                break
            truth = item.labels.get("diagnosis")
            others = [label for label in labels if label != truth]
            if not truth or not others:
                rejects.append(Reject(stage="generate", id=item.id, reason="no_contrast",
                                      detail="needs a diagnosis label and another label in the batch"))
                continue
            rng = random.Random(f"{context.seed}:{item.id}")
            asked = rng.choice(others) if rng.random() < self.options.negative_share else truth
            answer = "yes" if asked == truth else "no"
            samples.append(VQASample(
                images=(item.image,), question=f"Does this image show {asked}?", options=("yes", "no"),
                answer=answer, rationale=f"The image is labelled {truth}, so the answer is {answer}.",
                modality=item.modality, question_type=QuestionType.DISEASE_DIAGNOSIS, split=item.split,
                subject_id=item.subject_id,
                provenance=Provenance(source_dataset=item.dataset, source_id=item.id, generator="yes_no",
                                      generator_version="1", cycle=context.cycle, seed=context.seed)))
        ledger = Ledger(stage="generate", successes=len(samples), rejects={"no_contrast": len(rejects)},
                        wall_s=time.perf_counter() - started,
                        extra={"completed": len(samples) + len(rejects) == len(items)})
        return GenerationResult(samples=tuple(samples), rejects=tuple(rejects), ledger=ledger)


@hookimpl
def medgr2_register_generators(registry: Any) -> None:
    registry.add("yes_no", YesNoGenerator, config=YesNoOptions,
                 description="Offline yes/no questions about each item's diagnosis")
