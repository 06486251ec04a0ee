"""Answer formats and the one answer-extraction function shared by training and evaluation.

A policy answers a multiple-choice question in one of three formats (``policy.answer_format``):

* ``letter``: the option letter alone, ``B``;
* ``text``: the option text followed by its letter, ``pneumonia (B)`` (a tiny model learns this,
  not a bare letter: it must name the class before locating it among shuffled options);
* ``think``: ``<think>reasoning</think><answer>pneumonia (B)</answer>``.

:func:`build_prompt` and :func:`target_text` write the prompt and the training target of a
sample for a format; :func:`extract` reads any model output back to an option letter, or
``"invalid"`` when the output does not name exactly one option. It never guesses: an output
naming two options, or a letter that contradicts the option text beside it, is ``"invalid"``.

Pure Python: no heavy imports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from medgr2.data import LETTERS

AnswerFormat = Literal["letter", "text", "think"]
FORMATS: tuple[str, ...] = ("letter", "text", "think")
INVALID = "invalid"

INSTRUCTIONS: dict[str, str] = {
    "letter": "Answer with the letter of the correct option.",
    "text": "Answer with the text of the correct option followed by its letter in parentheses.",
    "think": ("First think step by step inside <think> </think> tags, then give the text of the correct "
              "option followed by its letter in parentheses inside <answer> </answer> tags."),
}
"""The instruction closing the prompt of each format."""


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown answer format {fmt!r}: use one of {', '.join(FORMATS)} "
                         "(config key policy.answer_format)")


def _options_block(options: Sequence[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def build_prompt(sample: Any, fmt: str = "text") -> str:
    """The user prompt for ``sample`` (anything with ``question`` and ``options``) in format ``fmt``.

    >>> from types import SimpleNamespace as S
    >>> print(build_prompt(S(question="What is shown?", options=("normal", "pneumonia")), "letter"))
    What is shown?
    A. normal
    B. pneumonia
    Answer with the letter of the correct option.
    """
    _check_format(fmt)
    return f"{sample.question.strip()}\n{_options_block(sample.options)}\n{INSTRUCTIONS[fmt]}"


def target_text(sample: Any, fmt: str = "text") -> str:
    """The answer a policy should write for ``sample`` in format ``fmt``.

    >>> from types import SimpleNamespace as S
    >>> s = S(options=("normal", "pneumonia"), answer="pneumonia", rationale="The lobe is opaque.")
    >>> [target_text(s, f) for f in ("letter", "text")]
    ['B', 'pneumonia (B)']
    >>> target_text(s, "think")
    '<think>The lobe is opaque.</think><answer>pneumonia (B)</answer>'
    """
    _check_format(fmt)
    index = list(sample.options).index(sample.answer)
    letter = LETTERS[index]
    if fmt == "letter":
        return letter
    answer = f"{sample.answer} ({letter})"
    if fmt == "text":
        return answer
    rationale = (getattr(sample, "rationale", "") or "").strip() or f"The image shows {sample.answer}."
    return f"<think>{rationale}</think><answer>{answer}</answer>"


# ------------------------------------------------------------------------------ extraction

_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_ANSWER_CUE = re.compile(
    r"\b(?:final answer|correct answer|correct option|correct choice|answer)\b\s*"
    r"(?:is|would be|should be|=|:|-)?\s*[:\-]?\s*", re.IGNORECASE)
_LETTER_FORMS = (
    re.compile(r"[\(\[]\s*([A-H])\s*[\)\]]"),                       # (B) [B]
    re.compile(r"(?:^|(?<=\s))([A-H])\s*[\.\):](?=\s|$)"),          # B.  B)  B:
    re.compile(r"\b(?:option|choice|letter)\s+([A-H])\b"),          # option B
)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (balanced braces, not stripped), or ``None`` when
    there is none or its braces never close. The one ``\\boxed{}`` parser of the project: the
    evaluation scorers use it too.

    >>> last_boxed("\\\\boxed{A} then \\\\boxed{ \\\\text{B} }")
    ' \\\\text{B} '
    >>> last_boxed("\\\\boxed{}"), last_boxed("\\\\boxed{x"), last_boxed("no box")
    ('', None, None)
    """
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def _letters(scope: str, n: int) -> set[int]:
    """Option indices named by an explicit letter in ``scope``."""
    found: set[int] = set()
    bare = scope.strip().strip("*`'\" ")
    bare = re.sub(r"[\.\):]$", "", bare).strip("([ ")
    if len(bare) == 1 and bare.upper() in LETTERS:
        found.add(LETTERS.index(bare.upper()))
    for pattern in _LETTER_FORMS:
        found |= {LETTERS.index(m) for m in pattern.findall(scope)}
    return {i for i in found if i < n} | ({-1} if any(i >= n for i in found) else set())


def _texts(scope: str, options: Sequence[str]) -> set[int]:
    """Option indices whose text appears in ``scope`` (a match inside a longer match is dropped)."""
    hay = f" {_norm(scope)} "
    spans: list[tuple[int, int, int]] = []
    for i, option in enumerate(options):
        needle = _norm(option)
        if not needle:
            continue
        for m in re.finditer(re.escape(f" {needle} "), hay):
            spans.append((m.start(), m.end(), i))
    keep = {i for s, e, i in spans
            if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _ in spans)}
    return keep


def _decide(scope: str, options: Sequence[str]) -> str:
    scope = scope.replace("**", "").replace("`", "")
    normalised = _norm(scope)
    exact = [i for i, o in enumerate(options) if _norm(o) == normalised]
    if len(exact) == 1:
        return LETTERS[exact[0]]
    letters = _letters(scope, len(options))
    if -1 in letters:  # a letter beyond the options: the output is not about these options
        return INVALID
    texts = _texts(scope, options)
    if len(letters) == 1:
        (letter,) = letters
        if not texts or letter in texts:
            return LETTERS[letter]
        return INVALID
    if len(letters) > 1:
        return INVALID
    return LETTERS[next(iter(texts))] if len(texts) == 1 else INVALID


def extract(text: str | None, options: Sequence[str]) -> str:
    """The option letter a model output names, or ``"invalid"``.

    Reads, in order of precedence: the last ``<answer>...</answer>`` block; the last
    ``\\boxed{...}``; the words after the last "answer is" / "Answer:" cue; else the whole
    output without its ``<think>`` block. In that scope it accepts a letter in many spellings
    (``B``, ``(B)``, ``B)``, ``B.``, ``option B``), the option text, or both when they agree.

    >>> opts = ["normal", "pneumonia"]
    >>> [extract(t, opts) for t in ["B", "(B)", "Answer: B.", "pneumonia (B)", "It is pneumonia."]]
    ['B', 'B', 'B', 'B', 'B']
    >>> extract("<think>normal or pneumonia?</think><answer>normal</answer>", opts)
    'A'
    >>> [extract(t, opts) for t in ["normal or pneumonia", "pneumonia (A)", "", "E"]]
    ['invalid', 'invalid', 'invalid', 'invalid']
    """
    if not text or not options:
        return INVALID
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return _decide(tags[-1], options)
    boxed = last_boxed(text)
    if boxed is not None:
        return _decide(re.sub(r"\\text\{([^}]*)\}", r"\1", boxed), options)
    body = _THINK.sub(" ", text).strip()
    if not body:
        return INVALID
    cues = list(_ANSWER_CUE.finditer(body))
    if cues:
        tail = body[cues[-1].end():]
        tail = re.split(r"(?<=[\.!?])\s+|\n", tail.strip(), maxsplit=1)[0]
        if tail.strip():
            verdict = _decide(tail, options)
            if verdict != INVALID:
                return verdict
    return _decide(body, options)


def is_correct(text: str | None, sample: Any) -> bool:
    """Whether ``text`` names the answer of ``sample`` (``extract`` equals its answer letter)."""
    return extract(text, sample.options) == LETTERS[list(sample.options).index(sample.answer)]
