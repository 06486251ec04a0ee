"""GRPO reward terms: plain functions ``f(completions, **columns) -> list[float]`` (like ``trl/rewards``).

TRL calls each term with the completions and every dataset column repeated per completion. The
GRPO trainer's dataset has the columns ``answer`` (gold option text), ``options``, ``question``
(question + lettered options, as the reward model sees it), ``image_ref`` (the sample's first
:class:`~medgr2.data.ImageRef` as JSON, so the reward model gets the image) and ``sample_id``.
Completions are strings or chat messages ``[{"role": "assistant", "content": str}]``.

No heavy imports: these functions are pure Python over :mod:`medgr2.answers`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from medgr2.answers import LETTERS, extract

_THINK_ANSWER = re.compile(r"^\s*<think>(.+?)</think>\s*<answer>(.+?)</answer>\s*$", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.+?)</answer>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the content of the last chat message.

    >>> completion_text([{"role": "assistant", "content": "pneumonia (B)"}])
    'pneumonia (B)'
    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "B"}]}])
    'B'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content or "")
    return ""


def split_answer(text: str) -> tuple[str, str]:
    """``(answer, rationale)`` of a completion: the <answer>/<think> blocks when present.

    >>> split_answer("<think>opaque lobe</think><answer>pneumonia (B)</answer>")
    ('pneumonia (B)', 'opaque lobe')
    >>> split_answer("pneumonia (B)")
    ('pneumonia (B)', '')
    """
    answer = _ANSWER.findall(text)
    think = _THINK.findall(text)
    if answer:
        return answer[-1].strip(), (think[-1].strip() if think else "")
    return text.strip(), (think[-1].strip() if think else "")


def reward_model(completions: Sequence[Any], question: Sequence[str], image_ref: Sequence[str | None], *,
                 model: Any, paper_exact: bool = False, **kwargs: Any) -> list[float]:
    """R_φ(I, q, a′): the reward model's score of each completion, normalised to [0, 1].

    Args:
        completions: Policy completions (strings or chat messages).
        question: The question with its lettered options, per completion.
        image_ref: The sample's first ``ImageRef`` as JSON (or ``None``), per completion.
        model: The reward model (:class:`medgr2.interfaces.RewardModel`); the GRPO trainer binds
            ``context.reward_model`` here.
        paper_exact: Keep the raw score r in [−6, 10]; by default return (r + 6) / 16, so that it
            weighs comparably with 0/1 terms.

    Returns:
        One reward per completion.

    >>> class LengthRM:  # a stand-in reward model: longer answers score higher
    ...     version = "len"
    ...     def score(self, inputs, context=None):
    ...         return [min(10.0, -6.0 + len(x.answer)) for x in inputs]
    >>> reward_model(["B", "pneumonia (B)"], question=["q", "q"], image_ref=[None, None], model=LengthRM())
    [0.0625, 0.8125]
    >>> reward_model(["B"], question=["q"], image_ref=[None], model=LengthRM(), paper_exact=True)
    [-5.0]
    """
    if model is None:
        raise ValueError("the reward_model term needs a reward model: set context.reward_model (the run's R_φ) "
                         "or remove the term from the grpo trainer's `reward` list")
    from medgr2.data import ImageRef, RewardInput

    inputs = []
    for completion, q, ref in zip(completions, question, image_ref, strict=True):
        answer, rationale = split_answer(completion_text(completion))
        image = ImageRef.model_validate_json(ref) if ref else None
        inputs.append(RewardInput(image=image, question=q, answer=answer or " ", rationale=rationale))
    scores = [float(s) for s in model.score(inputs)]
    if paper_exact:
        return scores
    return [min(1.0, max(0.0, (s + 6.0) / 16.0)) for s in scores]


def answer_match(completions: Sequence[Any], answer: Sequence[str], options: Sequence[Sequence[str]],
                 **kwargs: Any) -> list[float]:
    """1[extract(a′) = extract(a)]: whether a completion names the gold option.

    Uses :func:`medgr2.answers.extract`, the same function evaluation uses; an answer that names
    no option, or two, scores 0.

    >>> opts = ["normal", "pneumonia"]
    >>> answer_match(["pneumonia (B)", "A", "normal or pneumonia"], answer=["pneumonia"] * 3, options=[opts] * 3)
    [1.0, 0.0, 0.0]
    """
    out = []
    for completion, gold, opts in zip(completions, answer, options, strict=True):
        letter = LETTERS[list(opts).index(gold)]
        out.append(1.0 if extract(completion_text(completion), opts) == letter else 0.0)
    return out


def format_tags(completions: Sequence[Any], *, partial: float = 0.5, **kwargs: Any) -> list[float]:
    """The tag structure of the ``think`` answer format.

    1 for exactly ``<think>…</think><answer>…</answer>``, ``partial`` for an ``<answer>`` block
    without that structure, 0 otherwise.

    >>> format_tags(["<think>opaque</think><answer>B</answer>", "<answer>B</answer>", "B"])
    [1.0, 0.5, 0.0]
    """
    out = []
    for completion in completions:
        text = completion_text(completion)
        if _THINK_ANSWER.match(text):
            out.append(1.0)
        elif _ANSWER.search(text):
            out.append(float(partial))
        else:
            out.append(0.0)
    return out
