"""The reward plugin's stage helpers: build the 4-grade set and label policy samples.

Registered as functions (``reward.grade_set``, ``reward.label_policy_samples``) that the loop and
``medgr2 train-rm`` look up in the registry, so another plugin can replace them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medgr2.data import GradedExample, Prediction, RewardInput, VQASample
from medgr2.interfaces import StageContext


def _references(sources: Sequence[Mapping[str, Any] | Any]) -> list[Any]:
    """Read every configured reference source (``reward.references``)."""
    import os

    from medgr2.data import Modality
    from medgr2.store import read_jsonl
    from medgr2_reward import readers
    from medgr2_reward.options import ReferenceSource

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
    grade_sources: Sequence[Any] = (),
    registry: Any = None,
    *,
    samples: Sequence[VQASample] = (),
    references: Sequence[Mapping[str, Any] | Any] = (),
    options: Mapping[str, Any] | Any = None,
    seed: int = 0,
    reporter: Any = None,
    synonyms: Any = None,
) -> tuple[list[GradedExample], list[GradedExample]]:
    """The four-grade reward set, split by report/study: ``(train, held_out)``.

    Reference texts come from ``references`` (reader specs: IU X-ray XML, text, CSV, sample
    JSONL), from ``grade_sources`` (dataset specs: seed items with text and ready-made samples),
    and, when those give nothing, from ``samples`` (answers and rationales of VQA samples).

    Args:
        grade_sources: ``DatasetSpec`` s built with ``registry``.
        registry: The component registry (needed for ``grade_sources``).
        samples: VQA samples used when no other source gives a reference.
        references: ``reward.references`` entries (see ``medgr2_reward.options.ReferenceSource``).
        options: ``reward.grading`` (see ``medgr2_reward.options.GradeOptions``); its seed defaults to ``seed``.
        seed: The run seed.
        reporter: Where the counts are logged.
        synonyms: A ``word -> synonyms`` callable (default: WordNet, provisioned offline if needed).
    """
    from medgr2_reward import readers
    from medgr2_reward.grades import build_grade_examples
    from medgr2_reward.options import GradeOptions

    opts = options if isinstance(options, GradeOptions) else GradeOptions.model_validate(
        {"seed": seed, **dict(options or {})})
    refs = _references(references)
    for spec in grade_sources:
        if registry is None:
            raise ValueError("build_grade_set needs the registry to load reward.grade_sources")
        loaded = registry.create("dataset", spec.name, spec.options).load()
        refs += readers.from_seed_items(i for i in loaded.items if i.split in (None, "train"))
        refs += readers.from_samples(s for s in loaded.samples if s.split in (None, "train"))
    if not refs:
        refs = readers.from_samples(samples)
    if not refs:
        raise ValueError("no reference text for the grade set: configure reward.references (e.g. "
                         "{format: iu_xray, path: .../NLMCXR_reports.tgz}), reward.grade_sources, or give VQA samples")
    if synonyms is None and 2 in opts.grades:
        from medgr2_reward.perturb import SynonymSource
        from medgr2_reward.wordnet import get_wordnet

        synonyms = SynonymSource(get_wordnet(), opts.max_senses)
    graded = build_grade_examples(refs, synonyms, opts)
    if reporter is not None:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(graded.skipped.items())) or "none"
        reporter.log(f"grade set: {len(refs)} references -> {graded.counts()}; skipped: {skipped}")
    return graded.split("train"), graded.split("test")


def judge_samples(judge: Any, samples: Sequence[VQASample], context: StageContext,
                  answers: Sequence[str] | None = None) -> tuple[list[GradedExample], list[Any]]:
    """Seed or augment RM data with a judge: each sample (or ``answers[i]`` to it) is scored on the
    four criteria and mapped to [−6, 10] (``origin="judge"``); failed verdicts come back as rejects."""
    from medgr2_reward.judge import judge_examples

    if answers is not None and len(answers) != len(samples):
        raise ValueError(f"{len(answers)} answers for {len(samples)} samples")
    inputs = [RewardInput.from_sample(s, None if answers is None else answers[i]) for i, s in enumerate(samples)]
    return judge_examples(judge, inputs, context, group_ids=[s.subject_id or s.id for s in samples])


def _norm(text: str) -> str:
    return re.sub(r"[^\w\s]", "", text.lower()).strip()


def answer_matches(sample: VQASample, answer: str) -> bool:
    """True when ``answer`` is the sample's answer text or its option letter (case/punctuation-blind)."""
    a = _norm(answer)
    return a == _norm(sample.answer) or a == sample.answer_letter.lower()


def label_policy_samples(
    samples: Sequence[VQASample],
    policy: Path | str | None,
    context: StageContext,
    *,
    method: str = "match",
    registry: Any = None,
    evaluator: Any = None,
    judge: Any = None,
    grade_options: Mapping[str, Any] | None = None,
) -> list[GradedExample]:
    """Label new RM training data for continual adaptation.

    * ``match``: the policy answers each sample (through ``evaluator``); a correct answer → 10,
      a wrong one → −6 (``origin="match"``).
    * ``judge``: the policy's answers are scored by ``judge`` on the four criteria (``origin="judge"``).
    * ``grade``: grade perturbations of the samples' correct answers (no policy needed).
    """
    if not samples:
        return []
    inputs = {s.id: RewardInput.from_sample(s) for s in samples}
    if method == "grade":
        from medgr2_reward.grades import build_grade_examples
        from medgr2_reward.options import GradeOptions
        from medgr2_reward.perturb import SynonymSource
        from medgr2_reward.readers import from_samples
        from medgr2_reward.wordnet import get_wordnet

        opts = GradeOptions.model_validate({"seed": context.seed + context.cycle, **dict(grade_options or {}),
                                            "held_out_fraction": 0.0})
        synonyms = SynonymSource(get_wordnet(), opts.max_senses) if 2 in opts.grades else None
        graded = build_grade_examples(from_samples(samples), synonyms, opts).examples
        return [e.model_copy(update={"origin": "policy-grade", "split": None}) for e in graded]
    if method not in ("match", "judge"):
        raise ValueError(f"unknown labelling method {method!r}: use match, judge or grade")
    if evaluator is None or policy is None:
        raise ValueError(f"labelling by {method} needs the policy's answers: give an evaluator and a policy folder")
    out_dir = context.work_dir / "policy-answers"
    evaluator.evaluate(samples, Path(policy), out_dir, context)
    from medgr2.store import read_jsonl

    preds = read_jsonl(out_dir / "predictions.jsonl", Prediction)
    by_id = {s.id: s for s in samples}
    answered = [(by_id[p.question_id], p.model_answer) for p in preds if p.question_id in by_id]
    if method == "match":
        return [GradedExample(**inputs[s.id].model_copy(update={"answer": a or "(no answer)"}).model_dump(),
                              target=10.0 if answer_matches(s, a) else -6.0, grade=0,
                              group_id=s.subject_id or s.id, origin="match")
                for s, a in answered]
    if judge is None:
        raise ValueError("labelling by judge needs reward.judge (a generator backend with complete_json)")
    from medgr2_reward.judge import judge_examples

    judged, rejects = judge_examples(
        judge, [inputs[s.id].model_copy(update={"answer": a or "(no answer)"}) for s, a in answered], context,
        group_ids=[s.subject_id or s.id for s, _ in answered])
    if rejects:
        (context.work_dir / "judge-rejects.json").write_text(
            json.dumps([r.model_dump(mode="json") for r in rejects], indent=2), encoding="utf-8")
    return judged
