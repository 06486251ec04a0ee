"""Text perturbations behind the graded reward data (grades 2 and 3).

* :func:`synonym_perturb` (grade 2): replaces a share of the content words by WordNet synonyms.
  Numbers, negations and laterality words are never touched and never introduced.
* :func:`delete_phrases` (grade 3): deletes random short word spans until a share of the words
  is gone, leaving an incoherent text.

Both are deterministic given their ``random.Random`` and return ``None`` when the text offers
nothing to perturb (no eligible word), so callers can count and skip such texts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Any

TOKEN = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*|\d+(?:[.,:/]\d+)*|\S|\s+")
"""Words, numbers, single punctuation marks and whitespace runs: joining the tokens gives the text back."""

NEGATIONS = frozenset(
    "no not nor neither never none nothing without absent absence negative deny denies denied lack lacks "
    "lacking free cannot can't don't doesn't isn't aren't wasn't weren't unremarkable normal abnormal "
    "exclude excluded excludes rule ruled".split()
)
"""Words that carry a negation or a normal/abnormal judgement: never replaced or introduced."""

LATERALITY = frozenset(
    "left right bilateral bilaterally unilateral both either side sided ipsilateral contralateral "
    "lateral medial anterior posterior superior inferior upper lower proximal distal dextro levo".split()
)
"""Words that carry side or position: never replaced or introduced."""

NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred "
    "thousand million first second third fourth fifth single double triple half quarter once twice "
    "several multiple many few".split()
)
"""Number words and quantifiers: never replaced or introduced."""

STOPWORDS = frozenset(
    "a an the and or but if of in on at to for from by with as is are was were be been being it its this "
    "that these those there here which who whom what when where why how than then so such also may might "
    "can could would should will shall do does did has have had we you he she they them their our your "
    "his her i me my into onto over under about after before again all any each more most other some only "
    "own same very just per via".split()
)

PROTECTED = NEGATIONS | LATERALITY | NUMBER_WORDS | STOPWORDS

_HAS_DIGIT = re.compile(r"\d")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens whose concatenation is ``text``."""
    return TOKEN.findall(text)


def is_word(token: str) -> bool:
    """True for an alphabetic word token (not a number, punctuation or whitespace)."""
    return token[:1].isalpha()


def is_protected(word: str) -> bool:
    """True when ``word`` must never change: a number, negation, laterality or function word,
    an anonymisation mask such as ``XXXX``, or anything with a digit."""
    low = word.lower()
    if _HAS_DIGIT.search(word) or low in PROTECTED or len(low) < 3:
        return True
    return word.isupper() and len(word) > 1  # XXXX masks and acronyms (CT, PA, AP)


def _is_header(tokens: Sequence[str], i: int) -> bool:
    """True for a section label such as ``Impression`` in ``Impression:`` (kept as is)."""
    return i + 1 < len(tokens) and tokens[i + 1] == ":"


def _match_case(template: str, word: str) -> str:
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


class SynonymSource:
    """Synonyms of a word from WordNet (first senses first), cached, filtered so that no
    protected word is ever introduced.

    Args:
        wordnet: An NLTK WordNet reader (see :func:`medgr2_reward.wordnet.get_wordnet`).
        max_senses: How many senses of the word to take synonyms from.
    """

    def __init__(self, wordnet: Any, max_senses: int = 2):
        self.wordnet = wordnet
        self.max_senses = max_senses
        self._cache: dict[str, tuple[str, ...]] = {}

    def __call__(self, word: str) -> tuple[str, ...]:
        """Synonyms of ``word`` (lower case, may contain spaces), never ``word`` itself."""
        low = word.lower()
        if low not in self._cache:
            out: list[str] = []
            for synset in self.wordnet.synsets(low)[: self.max_senses]:
                for lemma in synset.lemma_names():
                    cand = lemma.replace("_", " ").lower()
                    parts = cand.split()
                    if (cand != low and cand not in out and not any(is_protected(p) for p in parts)
                            and all(p.replace("-", "").isalpha() for p in parts)):
                        out.append(cand)
            self._cache[low] = tuple(out)
        return self._cache[low]


def synonym_perturb(text: str, synonyms: Callable[[str], Sequence[str]], rng: random.Random,
                    rate: float = 0.3) -> str | None:
    """Grade 2: replace about ``rate`` of the replaceable words by a synonym.

    A word is replaceable when it is not protected (:func:`is_protected`) and has a synonym.
    At least one word is replaced; ``None`` when none is replaceable.
    """
    tokens = tokenize(text)
    slots = [i for i, t in enumerate(tokens)
             if is_word(t) and not _is_header(tokens, i) and not is_protected(t) and synonyms(t)]
    if not slots:
        return None
    k = max(1, round(rate * len(slots)))
    for i in rng.sample(slots, min(k, len(slots))):
        tokens[i] = _match_case(tokens[i], rng.choice(list(synonyms(tokens[i]))))
    out = "".join(tokens)
    return out if out != text else None


def delete_phrases(text: str, rng: random.Random, rate: float = 0.35, max_span: int = 3) -> str | None:
    """Grade 3: delete random spans of 1..``max_span`` consecutive words until about ``rate``
    of the words are gone (at least one span, never all words); ``None`` for texts under 3 words.

    Punctuation is kept, so the remains read as broken sentences.
    """
    tokens = tokenize(text)
    words = [i for i, t in enumerate(tokens) if (is_word(t) or t[:1].isdigit()) and not _is_header(tokens, i)]
    if len(words) < 3:
        return None
    goal = min(len(words) - 1, max(1, round(rate * len(words))))
    dead: set[int] = set()
    while len(dead) < goal:
        start = rng.randrange(len(words))
        span = rng.randint(1, max_span)
        for j in range(start, min(start + span, len(words))):
            if len(dead) < goal:
                dead.add(j)
    drop = {words[j] for j in dead}
    kept = [t for i, t in enumerate(tokens) if i not in drop]
    out = re.sub(r"[ \t]{2,}", " ", "".join(kept)).strip()
    out = re.sub(r" +([.,;:])", r"\1", out)
    return out if out and out != text else None
