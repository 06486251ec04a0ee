"""The built-in :class:`~medgr2.interfaces.PolicyLabeller` s: new R_φ data from the policy's behaviour.

``reward.labelling`` names one: ``match`` (the policy's answer is right → 10, wrong → −6), ``judge`` (the
judge scores the policy's answers on the paper's four criteria) or ``grade`` (grade perturbations of
the samples' own answers; no policy needed). ``judge_samples`` also seeds R_φ v0 from judge scores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medgr2 import artifacts
from medgr2.data import GradedExample, Prediction, RewardInput, VQASample
from medgr2.interfaces import LabelTools, StageContext
from medgr2.registry import NoOptions


def judge_samples(judge: Any, samples: Sequence[VQASample], context: StageContext,
                  answers: Sequence[str] | None = None) -> tuple[list[GradedExample], list[Any]]:
    """Seed or augment RM data with a judge: each sample (or ``answers[i]`` to it) is scored on the
    four criteria and mapped to [−6, 10] (``origin="judge"``); failed verdicts come back as rejects."""
    from medgr2_reward.judge import judge_examples

    if answers is not None and len(answers) != len(samples):
        raise ValueError(f"{len(answers)} answers for {len(samples)} samples")
    sendable, refused = screened(judge, samples)
    inputs = [RewardInput.from_sample(samples[i], None if answers is None else answers[i]) for i in sendable]
    examples, rejects = judge_examples(judge, inputs, context,
                                       group_ids=[samples[i].subject_id or samples[i].id for i in sendable])
    return examples, [*refused, *rejects]


def screened(judge: Any, samples: Sequence[VQASample]) -> tuple[list[int], list[Any]]:
    """The indices of the samples the judge may receive, and a ``restricted_source`` reject for each other one
    (the judge's ``screen``: an external API never gets restricted data unless allowed)."""
    from medgr2.data import Reject

    if not hasattr(judge, "screen"):
        raise TypeError(f"{type(judge).__name__} cannot judge: it has no screen(samples) (medgr2.interfaces.Judge)")
    reasons = judge.screen(samples)
    refused = [Reject(stage="judge", id=s.subject_id or s.id, reason="restricted_source", detail=why)
               for s, why in zip(samples, reasons) if why]
    return [i for i, why in enumerate(reasons) if not why], refused


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

    preds = read_jsonl(out_dir / artifacts.PREDICTIONS, Prediction)
    by_id = {s.id: s for s in samples}
    answered = [(by_id[p.question_id], p.model_answer) for p in preds if p.question_id in by_id]
    if method == "judge" and judge is not None:
        sendable, refused = screened(judge, [s for s, _ in answered])
        answered = [answered[i] for i in sendable]
        if refused:
            (context.work_dir / "judge-refused.json").write_text(
                json.dumps([r.model_dump(mode="json") for r in refused], indent=2), encoding="utf-8")
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


class _Labeller:
    method = ""

    def __init__(self, options: NoOptions | None = None):
        self.options = options

    def label(self, samples: Sequence[VQASample], policy: Path | None, context: StageContext,
              tools: LabelTools) -> list[GradedExample]:
        return label_policy_samples(samples, policy, context, method=self.method, evaluator=tools.evaluator,
                                    judge=tools.judge)


class MatchLabeller(_Labeller):
    """The policy answers each sample: a correct answer → 10, a wrong one → −6."""

    method = "match"


class JudgeLabeller(_Labeller):
    """The judge (``reward.judge``) scores the policy's answers on the paper's four criteria."""

    method = "judge"


class GradeLabeller(_Labeller):
    """Grade perturbations (10 / 6 / 0 / −6) of the samples' own answers; no policy needed."""

    method = "grade"
