"""Domain fluency features for the reward model: a bigram language model of the good answers.

A general-purpose text encoder such as MiniLM has no idea that "focal *integration*" or "normal
*pectus* x-ray" is not how a radiologist writes; a corpus of the domain's own reports does. The
:class:`DomainLexicon` counts the words and word pairs of the training answers that earned the top
grade (originals, target ≥ ``min_target``) and turns any answer into a few standardised numbers
(:data:`FEATURES`) that the reward head reads beside the encoder's vector:

* ``mean_logprob`` and ``min_logprob``: the mean and the lowest log-probability of the answer's
  word pairs under the bigram model (Dirichlet-smoothed towards the unigram model, add-one on
  unigrams, so unknown words get a small, finite probability);
* ``unseen_words``: the share of words never seen in a good answer;
* ``unseen_pairs``: the share of word pairs never seen in a good answer.

**Leave-out on training data.** A text the model was fitted on looks perfectly fluent to it (no
unseen words), and a held-out text of the same kind does not; a head trained on the former would
learn the wrong lesson. So :meth:`DomainLexicon.features` can take the counts to leave out: during
training, each example is featurised with its own group's good answers (and its own text, when it
was fitted) removed, exactly as if it were held out.

Everything is plain counting (no torch); the model persists as JSON (``lexicon.json``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgr2.store import atomic_write_text

FEATURES = ("mean_logprob", "min_logprob", "unseen_words", "unseen_pairs")
"""The fluency features, in the order the head sees them."""

_TOKEN = re.compile(r"[a-z]+(?:['-][a-z]+)*|\d+(?:[.,]\d+)*|[.,:;!?()/]")
BOS, EOS = "<s>", "</s>"
MU = 2.0
"""Dirichlet prior weight of the unigram model in the bigram probabilities."""


def tokens(text: str) -> list[str]:
    """Lower-cased words, numbers and punctuation between sentence markers."""
    return [BOS, *_TOKEN.findall(text.lower()), EOS]


@dataclass
class Counts:
    """Word and word-pair counts of some texts (what a fit adds, or what a leave-out removes)."""

    unigrams: Counter[str] = field(default_factory=Counter)
    bigrams: Counter[str] = field(default_factory=Counter)

    def add(self, text: str) -> None:
        """Count the words and word pairs of ``text``."""
        toks = tokens(text)
        self.unigrams.update(toks)
        self.bigrams.update(f"{a} {b}" for a, b in itertools.pairwise(toks))

    def __iadd__(self, other: Counts) -> Counts:  # noqa: PYI034 (typing.Self needs 3.11)
        self.unigrams.update(other.unigrams)
        self.bigrams.update(other.bigrams)
        return self


class DomainLexicon:
    """A bigram model of good answers and the fluency features it gives (see the module docstring).

    Args:
        min_target: Training examples with a target at least this high count as good answers.
    """

    def __init__(self, min_target: float = 8.0):
        self.min_target = min_target
        self.counts = Counts()
        self.total = 0  # unigram tokens counted
        self.fitted: set[str] = set()  # hashes of the texts counted (each text is counted once)
        self.mean = [0.0] * len(FEATURES)
        self.std = [1.0] * len(FEATURES)

    # ------------------------------------------------------------------ fitting

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def fit(self, texts: Iterable[str]) -> None:
        """Add good answers to the counts, each distinct text once (a retrain adds to what earlier
        versions counted; a text they counted already, e.g. from the replay buffer, is skipped)."""
        for text in texts:
            key = self._key(text)
            if key not in self.fitted:
                self.fitted.add(key)
                self.counts.add(text)
        self.total = sum(self.counts.unigrams.values())

    def counted(self, text: str) -> bool:
        """True when ``text`` is in the counts (its training features must leave it out)."""
        return self._key(text) in self.fitted

    def standardise(self, rows: Sequence[Sequence[float]]) -> None:
        """Set the per-feature mean and spread from training rows (raw :meth:`raw_features`)."""
        if not rows:
            return
        n = len(rows)
        for j in range(len(FEATURES)):
            col = [r[j] for r in rows]
            m = sum(col) / n
            var = sum((x - m) ** 2 for x in col) / n
            self.mean[j], self.std[j] = m, math.sqrt(var) if var > 1e-12 else 1.0

    # ------------------------------------------------------------------ features

    def raw_features(self, text: str, leave_out: Counts | None = None) -> list[float]:
        """The unstandardised features of ``text``, with ``leave_out``'s counts removed first."""
        uni, bi = self.counts.unigrams, self.counts.bigrams
        lo_uni = leave_out.unigrams if leave_out is not None else Counter()
        lo_bi = leave_out.bigrams if leave_out is not None else Counter()
        total = self.total - sum(lo_uni.values())
        vocab = len(uni) + 1 - sum(1 for w, c in lo_uni.items() if c and uni[w] <= c)
        toks = tokens(text)
        logps: list[float] = []
        unseen_pairs = 0
        for a, b in itertools.pairwise(toks):
            c_b = max(0, uni[b] - lo_uni[b])
            c_a = max(0, uni[a] - lo_uni[a])
            pair = f"{a} {b}"
            c_ab = max(0, bi[pair] - lo_bi[pair])
            p_uni = (c_b + 1.0) / (max(total, 0) + vocab)
            logps.append(math.log((c_ab + MU * p_uni) / (c_a + MU)))
            unseen_pairs += c_ab == 0
        words = [t for t in toks[1:-1] if t[0].isalpha()]
        unseen_words = sum(1 for w in words if uni[w] - lo_uni[w] <= 0)
        return [
            sum(logps) / len(logps),
            min(logps),
            unseen_words / max(1, len(words)),
            unseen_pairs / len(logps),
        ]

    def features(self, text: str, leave_out: Counts | None = None) -> list[float]:
        """The standardised features of ``text`` (see :data:`FEATURES`)."""
        raw = self.raw_features(text, leave_out)
        return [(x - m) / s for x, m, s in zip(raw, self.mean, self.std)]

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (counts, standardisation, settings)."""
        return {
            "features": list(FEATURES),
            "min_target": self.min_target,
            "mu": MU,
            "mean": self.mean,
            "std": self.std,
            "unigrams": dict(self.counts.unigrams),
            "bigrams": dict(self.counts.bigrams),
            "fitted": sorted(self.fitted),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DomainLexicon:
        """The lexicon :meth:`to_dict` wrote."""
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError(f"lexicon features {data.get('features')} are not {list(FEATURES)}: "
                             "the reward model was saved by another medgr2 version; retrain it")
        lex = cls(float(data["min_target"]))
        lex.counts = Counts(Counter(data["unigrams"]), Counter(data["bigrams"]))
        lex.total = sum(lex.counts.unigrams.values())
        lex.fitted = set(data.get("fitted", []))
        lex.mean, lex.std = list(data["mean"]), list(data["std"])
        return lex

    def save(self, path: Path) -> None:
        """Write ``path`` (JSON, atomically)."""
        atomic_write_text(path, json.dumps(self.to_dict(), sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> DomainLexicon:
        """Read a file :meth:`save` wrote."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
