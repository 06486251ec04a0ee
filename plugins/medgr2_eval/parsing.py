"""Text helpers shared by the scorers: option parsing, normalisation, ground-truth lookup.

When a predictions file carries no ``options``, they are parsed out of the question text.
Two layouts are understood:

* the MedGR2 / OmniMedVQA prompt form ``"... Please choose one of the following: X or Y or Z.
  You must pick only one answer."``;
* lettered lists, one per line or inline: ``A. x``, ``A) x``, ``(A) x``, ``A: x``, and Med-R1's
  own records, ``A)CT, B)MRI, C)X-ray`` (no space after the parenthesis, comma-separated; e.g.
  ``Splits/modality/test/X-Ray_test.json`` of Yuxiang-Lai117/Med-R1 at commit 88d76c7).

>>> parse_options("What is shown? Please choose one of the following: CT or MRI or X-ray. You must pick only one answer.")
('CT', 'MRI', 'X-ray')
>>> parse_options("Which organ?\\nA. liver\\nB. spleen\\nC. kidney")
('liver', 'spleen', 'kidney')
>>> parse_options("What modality is used? A)MRI, B)CT scan, C)Mammography, D)X-ray")
('MRI', 'CT scan', 'Mammography', 'X-ray')
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Sequence

from medgr2.data import LETTERS

_CHOOSE = re.compile(
    r"choose\s+(?:only\s+)?one\s+(?:of|from)\s+the\s+following(?:\s+(?:options|answers|choices))?\s*[:：]\s*",
    re.IGNORECASE,
)
_CHOOSE_END = re.compile(r"\.\s+(?=(?:You|Please|Answer|Respond|Only|Select|Pick|Output|Think)\b)|\n|$")
_OR = re.compile(r"\s*,?\s+or\s+", re.IGNORECASE)
_MARKER = re.compile(
    r"(?:(?<=[\s,;])|^)"  # a marker starts a line or follows a space or a list separator
    r"(?:\(([A-H])\)\s*|([A-H])\)\s*|([A-H])[.:]\s+)",  # (A)x  (A) x  A)x  A) x  A. x  A: x
    re.MULTILINE,
)
_INSTRUCTION_TAIL = re.compile(
    r"\s+(?=(?:Your task:|Provide the correct single-letter choice|Think through the question step by step"
    r"|(?:First )?[Oo]utput the thinking process))"
)
"""Med-R1's prompt templates follow the last option on the same line (``src/eval_vqa/*.py``,
``src/r1-v/src/open_r1/grpo_vqa*.py``): the last option ends where one of them starts."""
_PUNCT = str.maketrans("", "", string.punctuation)


def parse_options(question: str) -> tuple[str, ...]:
    """Options written in ``question`` (empty when none are found).

    The "choose one of the following: X or Y or Z." form wins when present; otherwise the
    longest run of consecutive lettered markers starting at ``A`` is used (at least two).
    """
    m = _CHOOSE.search(question)
    if m:
        tail = question[m.end() :]
        end = _CHOOSE_END.search(tail)
        body = tail[: end.start() if end else len(tail)].strip().rstrip(".").strip()
        parts = tuple(p.strip() for p in _OR.split(body) if p.strip())
        if len(parts) >= 2:
            return parts
    return _lettered(question)


def _lettered(question: str) -> tuple[str, ...]:
    markers = [
        (mm.group(1) or mm.group(2) or mm.group(3), mm.start(), mm.end()) for mm in _MARKER.finditer(question)
    ]
    best: list[tuple[str, int, int]] = []
    for i, (letter, _, _) in enumerate(markers):
        if letter != "A":
            continue
        chain = [markers[i]]
        for nxt in markers[i + 1 :]:
            if len(chain) < len(LETTERS) and nxt[0] == LETTERS[len(chain)]:
                chain.append(nxt)
        if len(chain) > len(best):
            best = chain
    if len(best) < 2:
        return ()
    out = []
    for k, (_, _, start) in enumerate(best):
        stop = best[k + 1][1] if k + 1 < len(best) else len(question)
        text = question[start:stop]
        if k + 1 == len(best):
            text = _INSTRUCTION_TAIL.split(text.split("\n", 1)[0], maxsplit=1)[0]
        out.append(text.strip().rstrip(";,").strip())
    return tuple(out) if all(out) else ()


@functools.lru_cache(maxsize=1 << 18)
def normalize(text: str) -> str:
    """The MedGR2 authors' ``normalize_answer``: lowercase, drop ASCII punctuation
    (``string.punctuation``), strip whitespace at both ends. Inner whitespace is kept as it is:
    ``"Stage  C"`` (two spaces) does not equal ``"Stage C"``.

    >>> normalize("  X-Ray. ")
    'xray'
    >>> normalize("Stage  C")
    'stage  c'
    """
    return text.lower().translate(_PUNCT).strip()


def gt_index(options: Sequence[str], gt_answer: str) -> int | None:
    """Index of the ground truth among ``options``: exact text, then normalised text, then a
    bare option letter (``"B"``, ``"(B)"``); ``None`` when it is none of them."""
    if gt_answer in options:
        return list(options).index(gt_answer)
    g = normalize(gt_answer)
    for i, o in enumerate(options):
        if normalize(o) == g:
            return i
    letter = gt_answer.strip().strip("().:").strip()
    if len(letter) == 1 and letter.upper() in LETTERS[: len(options)]:
        return LETTERS.index(letter.upper())
    return None
