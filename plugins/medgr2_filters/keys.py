"""Text normalisation, content keys, shingles and n-grams shared by the filters.

Reasons of every decision start with a short code and a colon (``"below_threshold: reward 3.10 <= tau
5.00"``): the filter stage counts drops by that code in its funnel.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

from medgr2.data import FilterDecision, VQASample

_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
_ASCII_TABLE = bytes(ord(chr(c).lower()) if chr(c).isalnum() or chr(c) == "_" else 32 for c in range(128)) \
    + bytes(range(128, 256))
"""ASCII bytes -> lower-case word characters, everything else a space (the fast path of normalise)."""


@functools.lru_cache(maxsize=1 << 16)
def _normalise_short(text: str) -> str:
    return normalise(text)


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation to spaces, whitespace collapsed: ``"Is  it, CT?" -> "is it ct"``."""
    if text.isascii():  # fast path, same result: ASCII is NFKC-stable and \w is [A-Za-z0-9_] there
        return " ".join(text.encode("ascii").translate(_ASCII_TABLE).decode("ascii").split())
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def words(text: str) -> list[str]:
    """The normalised word tokens of ``text``."""
    return normalise(text).split()


def image_keys(sample: VQASample) -> tuple[str, ...]:
    """The file-level identity of every image of ``sample`` (sha256 when known)."""
    return tuple(ref.key for ref in sample.images)


def content_key(sample: VQASample) -> str:
    """Exact-duplicate key: normalised question and answer plus the image keys.

    Two samples with the same key ask the same thing about the same image(s), whatever their
    punctuation, case or option order.
    """
    return "\x1f".join((normalise(sample.question), _normalise_short(sample.answer), *image_keys(sample)))


def dedup_text(sample: VQASample) -> str:
    """The text compared by near-duplicate detection: question and answer, normalised."""
    return normalise(sample.question) + " " + normalise(sample.answer)


def shingles(text: str, size: int) -> list[bytes]:
    """Word 1- to ``size``-grams of normalised ``text`` as bytes.

    Mixing single words with longer grams keeps a one-word edit of a short question above a 0.7
    Jaccard similarity (bigrams alone drop a 12-word question to about 0.7).
    """
    toks = text.split()
    grams = [" ".join(toks[i:i + k]).encode("utf-8")
             for k in range(1, size + 1) for i in range(len(toks) - k + 1)]
    return grams or [b""]


def ngrams(tokens: Sequence[str], n: int, *, whole_if_short: bool = True) -> list[tuple[str, ...]]:
    """Word n-grams of ``tokens``; a text shorter than ``n`` is one gram of its whole length
    (or none, when ``whole_if_short`` is false)."""
    if not tokens:
        return []
    if len(tokens) < n:
        return [tuple(tokens)] if whole_if_short else []
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def reward_or_fail(sample: VQASample, filter_name: str) -> float:
    """``sample.reward.total``; an unscored sample is an error naming the sample and the fix."""
    if sample.reward is None:
        raise ValueError(
            f"filter {filter_name!r}: sample {sample.id!r} has no reward (sample.reward is None). Score the "
            "samples first (`medgr2 score`), or remove reward-based filters from filters.steps.")
    return float(sample.reward.total)


def reward_or_none(sample: VQASample) -> float | None:
    """``sample.reward.total`` or ``None`` for an unscored sample."""
    return None if sample.reward is None else float(sample.reward.total)


def decide(sample: VQASample, name: str, keep: bool, code: str, detail: str,
           score: float | None = None) -> FilterDecision:
    """A :class:`FilterDecision` whose reason is ``"<code>: <detail>"``."""
    reason = f"{code}: {detail}"
    return FilterDecision(sample_id=sample.id, filter=name, keep=keep, reason=reason, score=score)
