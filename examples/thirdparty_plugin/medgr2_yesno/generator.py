"""A generator that asks yes/no questions about one label of each seed item.

For an item labelled ``diagnosis=pneumonia`` it asks either about the item's own label
("Is there evidence of pneumonia in this image?" → yes) or, for a deterministic share of items,
about another label seen in the same batch (→ no). Items without the label are rejected with a
reason; nothing is ever raised for one bad item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from medgr2.data import GenerationResult, Ledger, Provenance, QuestionType, Reject, SeedItem, VQASample
from medgr2.interfaces import StageContext
from medgr2_yesno import __version__


class YesNoOptions(BaseModel):
    """Options of the ``yesno`` generator."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(default="diagnosis", description="The seed label the question is about.")
    template: str = Field(default="Is there evidence of {value} in this image?",
                          description="The question; {value} is replaced by a label value.")
    negative_ratio: float = Field(default=0.5, ge=0, le=1,
                                  description="Share of questions about another item's label (answer: no).")


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class YesNoGenerator:
    """Writes one yes/no question per seed item (see the module docstring)."""

    version = __version__

    def __init__(self, options: YesNoOptions):
        self.options = options

    def generate(self, items: Sequence[SeedItem], context: StageContext) -> GenerationResult:
        """One sample per item that has the label; the others become rejects."""
        opts = self.options
        values = sorted({i.labels[opts.label] for i in items if opts.label in i.labels})
        samples, rejects = [], []
        for item in items:
            value = item.labels.get(opts.label)
            if value is None:
                rejects.append(Reject(stage="generate", id=item.id, reason="missing_label",
                                      detail=f"no {opts.label!r} label"))
                continue
            others = [v for v in values if v != value]
            negative = bool(others) and _unit(context.seed, item.id) < opts.negative_ratio
            asked = others[int(_unit(context.seed, item.id, "other") * len(others))] if negative else value
            samples.append(VQASample(
                images=(item.image,), question=opts.template.format(value=asked), options=("yes", "no"),
                answer="no" if negative else "yes", rationale=f"The image is labelled {value}.",
                modality=item.modality, question_type=QuestionType.DISEASE_DIAGNOSIS, split=item.split,
                subject_id=item.subject_id,
                provenance=Provenance(source_dataset=item.dataset, source_id=item.id, generator="yesno",
                                      generator_version=self.version, cycle=context.cycle, seed=context.seed),
            ))
        ledger = Ledger(stage="generate", requests=len(items), successes=len(samples), failures=len(rejects),
                        rejects={"missing_label": len(rejects)} if rejects else {})
        return GenerationResult(samples=tuple(samples), rejects=tuple(rejects), ledger=ledger)
