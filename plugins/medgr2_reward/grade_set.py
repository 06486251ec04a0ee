"""R_φ's graded training set: the ``four-grade`` :class:`~medgr2.interfaces.GradeSetBuilder`.

The reward-init stage (the loop's and ``medgr2 train-rm``'s) builds it from ``reward.grade_set``;
its options hold the reference readers (``references``) and the grading rates (``grading``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medgr2.data import GradedExample, SeedItem, VQASample, stable_hash
from medgr2.interfaces import GradeRequest, GradeSet, StageContext
from medgr2_reward.options import FourGradeOptions, GradeOptions, ReferenceSource


def _references(sources: Sequence[Mapping[str, Any] | Any]) -> list[Any]:
    """Read every configured reference source (``reward.references``)."""
    import os

    from medgr2.data import Modality
    from medgr2.store import read_jsonl
    from medgr2_reward import readers

    refs: list[Any] = []
    for raw in sources:
        src = raw if isinstance(raw, ReferenceSource) else ReferenceSource.model_validate(dict(raw))
        path = Path(os.path.expandvars(src.path)).expanduser()
        if "$" in str(path):
            raise ValueError(f"reference path {src.path!r} names an unset environment variable")
        modality = Modality(src.modality)
        if src.format == "iu_xray":
            refs += readers.read_iu_xray(path, src.limit)[0]
        elif src.format == "text":
            refs += readers.read_text_lines(path, src.question, modality, src.limit)
        elif src.format == "csv":
            if not src.text_columns:
                raise ValueError(f"reference source {src.path}: format csv needs text_columns")
            refs += readers.read_csv(path, src.text_columns, id_column=src.id_column, question=src.question,
                                     question_column=src.question_column, findings_column=src.findings_column,
                                     modality=modality, limit=src.limit)
        else:
            refs += readers.from_samples(read_jsonl(path, VQASample)[: src.limit])
    return refs


def build_grade_set(
    *,
    items: Sequence[SeedItem] = (),
    samples: Sequence[VQASample] = (),
    fallback_samples: Sequence[VQASample] = (),
    references: Sequence[Mapping[str, Any] | Any] = (),
    options: Mapping[str, Any] | Any = None,
    seed: int = 0,
    reporter: Any = None,
    synonyms: Any = None,
) -> tuple[list[GradedExample], list[GradedExample]]:
    """The four-grade reward set, split by report/study: ``(train, held_out)``.

    Reference texts come from ``references`` (reader specs: IU X-ray XML, text, CSV, sample
    JSONL), from ``items`` and ``samples`` (seed items with report text and ready-made samples of
    ``reward.grade_sources``), and, when those give nothing, from ``fallback_samples`` (answers and
    rationales of the run's train-split VQA samples).

    Args:
        items: Seed items whose labels carry a report text.
        samples: VQA samples whose answers and rationales are references.
        fallback_samples: VQA samples used only when no other source gives a reference.
        references: Reader specs (see ``medgr2_reward.options.ReferenceSource``).
        options: Grading options (see ``medgr2_reward.options.GradeOptions``); its seed defaults to ``seed``.
        seed: The run seed.
        reporter: Where the counts are logged.
        synonyms: A ``word -> synonyms`` callable (default: WordNet, provisioned offline if needed).
    """
    from medgr2_reward import readers
    from medgr2_reward.grades import build_grade_examples

    opts = options if isinstance(options, GradeOptions) else GradeOptions.model_validate(
        {"seed": seed, **dict(options or {})})
    refs = _references(references)
    refs += readers.from_seed_items(items)
    refs += readers.from_samples(samples)
    if not refs:
        refs = readers.from_samples(fallback_samples)
    if not refs:
        raise ValueError("no reference text for the grade set: configure reward.grade_set.options.references "
                         "(e.g. {format: iu_xray, path: .../NLMCXR_reports.tgz}), reward.grade_sources, or give "
                         "VQA samples")
    if synonyms is None and 2 in opts.grades:
        from medgr2_reward.perturb import SynonymSource
        from medgr2_reward.wordnet import get_wordnet

        synonyms = SynonymSource(get_wordnet(), opts.max_senses)
    graded = build_grade_examples(refs, synonyms, opts)
    if reporter is not None:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(graded.skipped.items())) or "none"
        reporter.log(f"grade set: {len(refs)} references -> {graded.counts()}; skipped: {skipped}")
    return graded.split("train"), graded.split("test")


class FourGradeSet:
    """The paper's 4-grade set (original 10, WordNet synonyms 6, phrase deletion 0, irrelevant −6)."""

    def __init__(self, options: FourGradeOptions):
        self.options = options

    def build(self, request: GradeRequest, context: StageContext) -> GradeSet:
        grading = self.options.grading
        if "seed" not in grading.model_fields_set:
            grading = grading.model_copy(update={"seed": request.seed})
        train, held_out = build_grade_set(
            items=request.items, samples=request.samples, fallback_samples=request.fallback_samples,
            references=self.options.references, options=grading, seed=request.seed, reporter=context.reporter)
        if request.judge is not None and request.judge_samples:
            judged_train, judged_held = judge_seed(request, grading, context)
            train, held_out = [*train, *judged_train], [*held_out, *judged_held]
        return GradeSet(train=train, held_out=held_out)


def judge_seed(request: GradeRequest, grading: GradeOptions,
               context: StageContext) -> tuple[list[GradedExample], list[GradedExample]]:
    """R_φ v0's judge part: ``request.judge_samples`` of the run's samples (a seeded draw), each scored by
    the judge on the paper's four criteria and mapped to [−6, 10] (``origin="judge"``), split into train
    and held-out by group like the graded set. Failed verdicts go to ``judge-rejects.jsonl``."""
    import random

    from medgr2.store import write_jsonl
    from medgr2_reward.labellers import judge_samples

    pool = sorted([*request.samples, *request.fallback_samples], key=lambda s: s.id)
    picked = random.Random(request.seed).sample(pool, min(len(pool), request.judge_samples))
    if not picked:
        raise ValueError("reward.judge_seed_samples > 0 but the run has no train-split samples to judge")
    examples, rejects = judge_samples(request.judge, picked, context)
    if rejects:
        write_jsonl(context.work_dir / "judge-rejects.jsonl", rejects)
    if context.reporter is not None:
        context.reporter.log(f"judge seed: {len(examples)} of {len(picked)} samples scored, {len(rejects)} rejected")
    held = {e.group_id for e in examples
            if int(stable_hash(grading.seed, "judge", e.group_id), 16) / 16**16 < grading.held_out_fraction}
    return [e for e in examples if e.group_id not in held], [e for e in examples if e.group_id in held]
