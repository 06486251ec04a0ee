"""Answer–rationale consistency features for multiple-choice inputs (``consistency`` option of ``minilm``).

A rationale should argue for the answer it comes with. A pooled sentence vector tells "the label is
normal. So the answer is pneumonia" from "the label is pneumonia" only faintly, and a small head learns
the difference slowly; these four flags give it directly (:data:`FEATURES`):

``has_options``
    the question lists lettered options (``A. ...`` lines, as :meth:`VQASample.options_text` writes);
``answer_is_option``
    the answer is one of them;
``answer_named``
    the rationale names the answer (as a whole phrase);
``other_named``
    the rationale names another option (one that neither contains nor is contained in the answer,
    so "pneumonia" does not count against "covid-19 pneumonia").

Free-text inputs (report grades) get ``[0, 0, answer_named, 0]``.
"""

from __future__ import annotations

import re

from medgr2.data import RewardInput

FEATURES = ("has_options", "answer_is_option", "answer_named", "other_named")

_OPTION = re.compile(r"^\s*[A-Z][.)]\s+(.+?)\s*$", re.MULTILINE)


def _norm(text: str) -> str:
    return " " + re.sub(r"\W+", " ", text.lower()).strip() + " "


def options_of(question: str) -> list[str]:
    """The lettered options listed in a question text (``A. text`` lines), in order."""
    return _OPTION.findall(question)


def _names(text: str, phrase: str) -> bool:
    return phrase.strip() != "" and phrase in text


def consistency_features(inp: RewardInput) -> list[float]:
    """The four flags of :data:`FEATURES` for one input (each 0.0 or 1.0)."""
    answer, rationale = _norm(inp.answer), _norm(inp.rationale)
    options = [_norm(o) for o in options_of(inp.question)]
    others = [o for o in options if o != answer and o.strip() not in answer and answer.strip() not in o]
    return [float(bool(options)), float(answer in options), float(_names(rationale, answer)),
            float(any(_names(rationale, o) for o in others))]
