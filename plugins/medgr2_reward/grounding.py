"""Image grounding features: does this answer fit this image, by the labelled images nearest to it?

A tiny CNN trained only through the reward regression does not learn what an image shows from a few
hundred pictures (docs/reward-model.md: swapping images left every defect AUROC unchanged), yet the
references R_φ is trained on are labelled images. :class:`GroundingBank` keeps them: a small pixel
vector of every good reference image (target ≥ ``min_target``: the originals of the grade set) with
the answer it was given. For a multiple-choice input it looks up the ``k`` bank images most like the
input's image among those whose answer is one of the input's options (images that answered *this*
kind of question), and gives the head four numbers (:data:`FEATURES`):

``support``
    1 when such bank images exist (else every feature is 0: free text, no image, or a question no
    labelled image was asked);
``agree``
    the share of the ``k`` nearest whose answer is the input's answer (similarity-weighted);
``other``
    the largest such share among the other options: ``agree`` low and ``other`` high says the image
    looks like those answered otherwise (a confident answer from a confusable class);
``nearest``
    the cosine similarity of the nearest of them: low when no image like this one was ever asked
    the question (an organ question asked of a skin photograph).

This is a k-nearest-neighbour classifier over raw pixels, the simplest image model that works with
tens of labelled images (on PneumoniaMNIST, 240 train images, a linear model on raw pixels reaches
0.92 on val). While training, each example's own group (subject or image) is left out of the
lookup, so the head learns from the features it will meet on images it has never seen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medgr2.data import ImageRef, RewardInput
from medgr2_reward.consistency import options_of
from medgr2_reward.memo import ImageMemo

FEATURES = ("support", "agree", "other", "nearest")
SIDE = 16
"""Images become ``SIDE × SIDE`` RGB pixel vectors, centred and scaled to unit length."""


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def pixel_vector(image: ImageRef) -> np.ndarray:
    """The image as a unit-length ``SIDE × SIDE × 3`` vector (centred: cosine similarity compares
    structure and colour, not brightness alone)."""
    from medgr2.images import open_image

    arr = np.asarray(open_image(image).convert("RGB").resize((SIDE, SIDE)), dtype=np.float32).ravel() / 255.0
    arr = arr - arr.mean()
    norm = float(np.linalg.norm(arr))
    return arr / norm if norm > 1e-6 else arr


class GroundingBank:
    """Labelled reference images and their answers; :meth:`features` of an (image, options, answer)."""

    def __init__(self, k: int = 8, min_target: float = 8.0):
        self.k, self.min_target = k, min_target
        self.vectors = np.zeros((0, SIDE * SIDE * 3), dtype=np.float32)
        self.answers: list[str] = []
        self.groups: list[str] = []
        self._vector = ImageMemo(pixel_vector)  # 3 KB a vector: 24 MB when full

    def __len__(self) -> int:
        return len(self.answers)

    def fit(self, examples: Sequence[object]) -> int:
        """Add the good examples with an image and a multiple-choice question (graded examples: their
        ``target``, ``group_id``, ``image``, ``question`` and ``answer``); returns how many were added.
        An (image, answer) pair already in the bank is not added twice."""
        have = {(g, a) for g, a in zip(self.groups, self.answers)}
        vectors, added = [], 0
        for e in examples:
            image = getattr(e, "image", None)
            if image is None or getattr(e, "target", 0.0) < self.min_target or not options_of(e.question):
                continue
            group, answer = f"{getattr(e, 'group_id', None) or image.key}", _norm(e.answer)
            if (group, answer) in have or not answer:
                continue
            have.add((group, answer))
            vectors.append(self._vector(image))
            self.answers.append(answer)
            self.groups.append(group)
            added += 1
        if vectors:
            self.vectors = np.concatenate([self.vectors, np.stack(vectors)])
        return added

    def features(self, inputs: Sequence[RewardInput], leave_out: Sequence[str | None] | None = None
                 ) -> list[list[float]]:
        """The four :data:`FEATURES` of each input; ``leave_out[i]``: a group whose bank images input
        ``i`` may not use (its own, while training)."""
        out: list[list[float]] = []
        answers = np.array(self.answers, dtype=object)
        groups = np.array(self.groups, dtype=object)
        for i, inp in enumerate(inputs):
            options = [_norm(o) for o in options_of(inp.question)]
            answer = _norm(inp.answer)
            if inp.image is None or not options or not len(self):
                out.append([0.0, 0.0, 0.0, 0.0])
                continue
            mask = np.isin(answers, options)
            if leave_out is not None and leave_out[i] is not None:
                mask &= groups != leave_out[i]
            idx = np.flatnonzero(mask)
            if idx.size == 0:
                out.append([0.0, 0.0, 0.0, 0.0])
                continue
            sims = self.vectors[idx] @ self._vector(inp.image)
            top = np.argsort(-sims, kind="stable")[: self.k]
            weights = np.exp((sims[top] - sims[top[0]]) / 0.05)  # softly favour the nearest
            weights /= weights.sum()
            share: dict[str, float] = {}
            for j, w in zip(idx[top], weights):
                share[answers[j]] = share.get(answers[j], 0.0) + float(w)
            other = max((v for a, v in share.items() if a != answer), default=0.0)
            out.append([1.0, share.get(answer, 0.0), other, float(sims[top[0]])])
        return out

    def save(self, folder: Path) -> None:
        """``grounding.npz`` (the pixel vectors, float16) and ``grounding.json`` (answers, groups, k)."""
        np.savez_compressed(folder / "grounding.npz", vectors=self.vectors.astype(np.float16))
        (folder / "grounding.json").write_text(json.dumps(
            {"k": self.k, "min_target": self.min_target, "side": SIDE, "answers": self.answers,
             "groups": self.groups}) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> GroundingBank:
        meta = json.loads((folder / "grounding.json").read_text(encoding="utf-8"))
        if meta.get("side") != SIDE:
            raise ValueError(f"{folder / 'grounding.json'} holds {meta.get('side')}-pixel vectors; this version "
                             f"of medgr2 reads {SIDE}: retrain the reward model")
        bank = cls(k=int(meta["k"]), min_target=float(meta["min_target"]))
        with np.load(folder / "grounding.npz") as data:
            bank.vectors = data["vectors"].astype(np.float32)
        bank.answers, bank.groups = list(meta["answers"]), list(meta["groups"])
        return bank
