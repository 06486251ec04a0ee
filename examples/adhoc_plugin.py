"""An ad hoc single-file medgr2 plugin: no package, no install.

Load it for one command with ``--plugin``::

    medgr2 --plugin examples/adhoc_plugin.py plugins list
    medgr2 --plugin examples/adhoc_plugin.py run my.yaml --set 'filters.steps=[{name: max_words, options: {limit: 30}}]'

or for every command with ``MEDGR2_PLUGINS=examples/adhoc_plugin.py``. It adds:

- the filter ``max_words``: drops samples whose question is longer than ``limit`` words;
- the reward term ``brevity``: ``1.0`` for completions of at most ``limit`` words, falling
  linearly to ``0.0`` at twice that.

A file plugin is imported as the module ``medgr2_adhoc_<file stem>``; it can register its own
objects directly (as here) or lazily as ``"medgr2_adhoc_adhoc_plugin:Name"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medgr2 import hookimpl


class MaxWordsOptions(BaseModel):
    """Options of the ``max_words`` filter."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=40, ge=1, description="Longest question kept, in words.")


class MaxWordsFilter:
    """Keeps samples whose question has at most ``limit`` words (a :class:`medgr2.interfaces.Filter`)."""

    def __init__(self, options: MaxWordsOptions):
        self.options = options

    def apply(self, samples: Sequence[Any], kept: Sequence[Any], context: Any) -> list[Any]:
        """One decision per sample, with the word count as its score."""
        from medgr2.data import FilterDecision

        decisions = []
        for s in samples:
            words = len(s.question.split())
            keep = words <= self.options.limit
            decisions.append(FilterDecision(sample_id=s.id, filter="max_words", keep=keep, score=float(words),
                                            reason="short_enough" if keep else "too_long"))
        return decisions


class BrevityOptions(BaseModel):
    """Options of the ``brevity`` reward term."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=20, ge=1, description="Completions up to this many words get the full reward.")


def brevity(completions: Sequence[Any], limit: int = 20, **kwargs: Any) -> list[float]:
    """1.0 up to ``limit`` words, then linearly down to 0.0 at ``2 * limit`` words.

    >>> brevity(["yes", "one two three four"], limit=2)
    [1.0, 0.0]
    >>> brevity([[{"role": "assistant", "content": "a b c"}]], limit=2)
    [0.5]
    """
    out = []
    for c in completions:
        text = c if isinstance(c, str) else " ".join(str(m.get("content", "")) for m in c)
        words = len(text.split())
        out.append(max(0.0, min(1.0, 2.0 - words / limit)))
    return out


@hookimpl
def medgr2_register_filters(registry: Any) -> None:
    """Register the ``max_words`` filter."""
    registry.add("max_words", MaxWordsFilter, config=MaxWordsOptions)


@hookimpl
def medgr2_register_reward_terms(registry: Any) -> None:
    """Register the ``brevity`` reward term."""
    registry.add("brevity", brevity, config=BrevityOptions)
