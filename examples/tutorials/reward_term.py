"""Tutorial 1: a GRPO reward term, ``concise`` (see docs/tutorials.md).

A reward term is a plain function ``f(completions, **kwargs) -> list[float]``, like TRL's
``trl/rewards``: one float per completion, dataset columns (``answer``, ``options``, ``images`` ...)
arriving as keyword arguments, one value per completion. Options are a pydantic model; the
registry binds them as keyword arguments, and ``medgr2 config validate`` checks them even inside
``policy.grpo.options.reward``.

    medgr2 --plugin examples/tutorials/reward_term.py config validate my.yaml \\
        --set 'policy.grpo.options.reward=[{term: reward_model, weight: 0.7}, {term: answer_match, weight: 0.2},
               {term: concise, weight: 0.1, options: {max_words: 12}}]'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medgr2 import hookimpl


class ConciseOptions(BaseModel):
    """Options of the ``concise`` term."""

    model_config = ConfigDict(extra="forbid")
    max_words: int = Field(default=20, ge=1, description="Completions up to this many words get the full reward.")


def _text(completion: Any) -> str:
    """A completion is a string, or chat messages ``[{"role": "assistant", "content": ...}]``."""
    if isinstance(completion, str):
        return completion
    return " ".join(str(m.get("content", "")) for m in completion)


def concise(completions: Sequence[Any], max_words: int = 20, **kwargs: Any) -> list[float]:
    """1.0 for a completion of at most ``max_words`` words, falling linearly to 0.0 at twice that.

    >>> concise(["pneumonia (B)", "the image shows " + "very " * 30 + "clearly pneumonia (B)"], max_words=4)
    [1.0, 0.0]
    >>> concise([[{"role": "assistant", "content": "one two three four five six"}]], max_words=4)
    [0.5]
    """
    out = []
    for c in completions:
        n = len(_text(c).split())
        out.append(max(0.0, min(1.0, 2.0 - n / max_words)))
    return out


@hookimpl
def medgr2_register_reward_terms(registry: Any) -> None:
    registry.add("concise", concise, config=ConciseOptions,
                 description="1 for short completions, falling to 0 at twice max_words")
