"""Seeding and labelling R_φ's data with an LLM judge.

A judge is any generator backend exposing ``complete_json(prompts, schema, context) -> list[dict |
Reject]`` (``prompts`` are ``(text, images)`` pairs). It scores each answer on the four criteria of
the paper — factual accuracy, formatted accuracy, reasoning soundness, instruction relevance —
each 0..``scale_max``; their weighted mean is mapped linearly onto [−6, 10].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medgr2.data import GradedExample, Reject, RewardInput, stable_hash
from medgr2.interfaces import StageContext
from medgr2_reward.options import SCORE_MAX, SCORE_MIN, JudgeOptions

CRITERIA = ("factual_accuracy", "formatted_accuracy", "reasoning_soundness", "instruction_relevance")


def judge_schema(scale_max: int = 10) -> dict[str, Any]:
    """The JSON schema of a verdict: one integer per criterion, 0..``scale_max``, and a comment."""
    crit = {c: {"type": "integer", "minimum": 0, "maximum": scale_max} for c in CRITERIA}
    return {"type": "object", "properties": {**crit, "comment": {"type": "string"}}, "required": list(CRITERIA)}


def judge_prompt(inp: RewardInput, scale_max: int = 10) -> str:
    """The instruction sent with the image: the question, the answer to judge and the criteria."""
    rationale = f"\nRationale: {inp.rationale}" if inp.rationale.strip() else ""
    return (
        "You are a board-certified radiologist grading an answer to a medical visual question.\n"
        f"Question: {inp.question}\nAnswer: {inp.answer}{rationale}\n\n"
        f"Score each criterion from 0 (worst) to {scale_max} (best):\n"
        "- factual_accuracy: the answer is correct for this image;\n"
        "- formatted_accuracy: it answers in the requested form (one of the options, well formed);\n"
        "- reasoning_soundness: the rationale is medically sound and supports the answer;\n"
        "- instruction_relevance: it addresses the question asked, nothing irrelevant or hallucinated.\n"
        'Reply with JSON only: {"factual_accuracy": n, "formatted_accuracy": n, "reasoning_soundness": n, '
        '"instruction_relevance": n, "comment": "one sentence"}'
    )


def verdict_to_reward(verdict: dict[str, Any], options: JudgeOptions | None = None) -> float:
    """Map a verdict's four criteria onto [−6, 10] (weighted mean, linear).

    Raises:
        ValueError: a criterion is missing, not a number, or outside 0..scale_max.
    """
    opts = options or JudgeOptions()
    total_w = sum(opts.weights.get(c, 0.0) for c in CRITERIA)
    if total_w <= 0:
        raise ValueError(f"judge weights {opts.weights} give the four criteria no weight")
    acc = 0.0
    for c in CRITERIA:
        v = verdict.get(c)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"criterion {c!r} is missing or not a number: {v!r}")  # noqa: TRY004 - a bad verdict
        if not 0 <= v <= opts.scale_max:
            raise ValueError(f"criterion {c!r} = {v} is outside 0..{opts.scale_max}")
        acc += opts.weights.get(c, 0.0) * float(v) / opts.scale_max
    return SCORE_MIN + (SCORE_MAX - SCORE_MIN) * acc / total_w


def judge_examples(judge: Any, inputs: Sequence[RewardInput], context: StageContext,
                   group_ids: Sequence[str] | None = None,
                   options: JudgeOptions | None = None) -> tuple[list[GradedExample], list[Reject]]:
    """Ask ``judge`` for a verdict on each input; return graded examples (``origin="judge"``)
    and rejects (a failed call or an invalid verdict, with the reason)."""
    if not hasattr(judge, "complete_json"):
        raise TypeError(f"{type(judge).__name__} cannot judge: it has no complete_json(prompts, schema, context); "
                        "use a generator backend that has one (gemini, openai, local)")
    opts = options or JudgeOptions()
    prompts = [(judge_prompt(i, opts.scale_max), [i.image] if i.image is not None else []) for i in inputs]
    verdicts = judge.complete_json(prompts, judge_schema(opts.scale_max), context)
    if len(verdicts) != len(inputs):
        raise RuntimeError(f"the judge returned {len(verdicts)} verdicts for {len(inputs)} prompts")
    examples, rejects = [], []
    for n, (inp, v) in enumerate(zip(inputs, verdicts, strict=True)):
        gid = group_ids[n] if group_ids is not None else stable_hash(inp.question, inp.image and inp.image.key)
        if isinstance(v, Reject):
            rejects.append(v.model_copy(update={"stage": "judge", "id": gid}))
            continue
        try:
            target = verdict_to_reward(v, opts)
        except ValueError as exc:
            rejects.append(Reject(stage="judge", id=gid, reason="invalid_verdict", detail=str(exc)))
            continue
        examples.append(GradedExample(image=inp.image, question=inp.question, answer=inp.answer,
                                      rationale=inp.rationale, target=target, grade=0, group_id=gid,
                                      origin="judge"))
    return examples, rejects
