"""Options models of the built-in filters (light: pydantic only, no numpy, no datasketch).

Every model forbids unknown keys, so a typo in a run config is reported with the known fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


Stratum = Literal["modality", "question_type", "dataset", "answer"]
"""What a selection filter can stratify by: the sample's modality, question type, source dataset, or
answer (case and spacing folded), which keeps the class balance of the answers the generator wrote."""


class _Stratified(_Options):
    stratify_by: list[Stratum] = Field(
        default_factory=list,
        description="Keep the same share of every stratum (modality, question_type, dataset, answer or a "
                    "combination), so selection does not shift the mix; [] ranks all samples together.")

    @model_validator(mode="after")
    def _unique_strata(self) -> _Stratified:
        if len(set(self.stratify_by)) != len(self.stratify_by):
            raise ValueError(f"stratify_by names a field twice: {self.stratify_by}; give each of modality, "
                             "question_type, dataset, answer at most once")
        return self


class ThresholdOptions(_Stratified):
    """Options of ``threshold``: keep a sample when its reward r > tau.

    With ``stratify_by``, tau sets only *how many* to keep: K = the number of samples with r > tau,
    shared out over the strata in proportion to their sizes (largest remainder), and each stratum
    keeps its highest-reward samples, i.e. a per-stratum quantile threshold. A stratum R_phi scores
    low as a whole (one modality) keeps as large a share as the others. ``min_reward`` is a floor
    under that: a sample with r <= min_reward is never kept, so a stratum may keep fewer.
    """

    tau: float = Field(default=5.0, ge=-6.0, le=10.0, description="Keep samples whose reward total is > tau.")
    min_reward: float | None = Field(
        default=None, ge=-6.0, le=10.0,
        description="With stratify_by: never keep a sample whose reward is <= min_reward (None: no floor).")

    @model_validator(mode="after")
    def _floor_needs_strata(self) -> ThresholdOptions:
        if self.min_reward is not None and not self.stratify_by:
            raise ValueError("min_reward applies only with stratify_by (without strata, tau is the floor); "
                             "drop min_reward or add e.g. stratify_by: [modality]")
        return self


class _CountOptions(_Stratified):
    k: int | None = Field(default=None, ge=0, description="Number of samples to keep (give k or fraction).")
    fraction: float | None = Field(default=None, gt=0.0, le=1.0,
                                   description="Share of the input to keep, rounded to the nearest count.")

    @model_validator(mode="after")
    def _one_of(self) -> _CountOptions:
        if (self.k is None) == (self.fraction is None):
            raise ValueError("give exactly one of k (a count) or fraction (a share in (0, 1]), "
                             "e.g. {k: 1000}")
        return self

    def count(self, n: int) -> int:
        """How many of ``n`` samples to keep (``k`` or ``fraction``)."""
        if self.k is not None:
            return min(self.k, n)
        if self.fraction is None:
            raise ValueError("this count is set by match_tau, not by k or fraction")
        return min(n, int(self.fraction * n + 0.5))


class TopKOptions(_CountOptions):
    """Options of ``top_k``: keep the k highest-reward samples (ties: earlier input first).

    With ``stratify_by``, k is shared out over the strata in proportion to their sizes (largest
    remainder: every stratum keeps the same share up to one sample, and the counts sum to k) and
    each stratum keeps its highest-reward samples.
    """


class RandKOptions(_CountOptions):
    """Options of ``rand_k``: keep k samples chosen uniformly at random (the paper's RandK baseline).

    ``match_tau`` sets k to the number of samples a ``threshold`` filter with that tau would keep,
    so the baseline draws as many samples as the reward filter it is compared with. With
    ``stratify_by``, k is shared out over the strata as in ``top_k`` and each stratum is drawn from
    on its own.
    """

    match_tau: float | None = Field(
        default=None, ge=-6.0, le=10.0,
        description="k = how many samples have reward > match_tau (give k, fraction or match_tau).")
    seed: int | None = Field(default=None,
                             description="Random seed; None derives it from the run seed and cycle.")

    @model_validator(mode="after")
    def _one_of(self) -> RandKOptions:
        if sum(v is not None for v in (self.k, self.fraction, self.match_tau)) != 1:
            raise ValueError("give exactly one of k (a count), fraction (a share in (0, 1]) or match_tau "
                             "(as many as a threshold filter with that tau keeps), e.g. {k: 1000}")
        return self


class DedupOptions(_Options):
    """Options of ``dedup``: exact and near-duplicate removal, within the batch and against D_gen."""

    mode: Literal["exact", "near", "both"] = Field(
        default="both",
        description="exact: same normalised text and image file; near: MinHash text + perceptual image hash.")
    text_threshold: float = Field(
        default=0.7, gt=0.0, le=1.0,
        description="Estimated Jaccard similarity of text shingles at which texts are near-equal.")
    answer_min_jaccard: float = Field(
        default=0.6, ge=0.0, le=1.0,
        description="Near duplicates must also have answers whose word sets overlap this much (Jaccard).")
    num_perm: int = Field(default=128, ge=16, le=512, description="MinHash permutations.")
    shingle: int = Field(default=2, ge=1, le=5,
                         description="Longest word n-gram in the text shingles (1..shingle).")
    image_hash: Literal["dhash", "ahash", "key"] = Field(
        default="dhash",
        description="Perceptual image hash (dhash, ahash), or 'key' to compare only file hashes.")
    image_max_distance: int = Field(
        default=5, ge=0, le=15,
        description="Largest Hamming distance (of 64 bits) between near-equal images; larger values "
                    "index images by narrower bit bands, so templated texts give more candidate pairs.")
    against_kept: bool | None = Field(
        default=None,
        description="Also drop duplicates of samples already in D_gen; None: unless filters.allow_overlap.")


class OverlapOptions(_Options):
    """Options of ``overlap``: drop samples already in D_gen (Algorithm 1, lines 6-8)."""

    allow_overlap: bool | None = Field(
        default=None,
        description="Keep samples already in D_gen; None follows filters.allow_overlap of the run.")


class ContaminationOptions(_Options):
    """Options of ``contamination``: drop samples overlapping an evaluation set."""

    eval_paths: list[str] = Field(default_factory=list, description="JSONL files of VQASamples to protect.")
    omnimedvqa_roots: list[str] = Field(
        default_factory=list,
        description="OmniMedVQA-layout roots (QA_information/<access>/<Dataset>.json + Images/...).")
    use_context: bool = Field(default=True,
                              description="Also protect context.eval_samples when given.")
    ngram: int = Field(default=13, ge=3, le=50, description="Word n-gram length of the text overlap test.")
    short_texts: Literal["skip", "whole"] = Field(
        default="skip",
        description="Texts shorter than ngram words: skip the text test, or match them as a whole.")
    check_text: bool = Field(default=True, description="Drop samples sharing a word n-gram with eval items.")
    check_images: bool = Field(default=True, description="Drop samples whose image matches an eval image.")
    image_hash: Literal["dhash", "ahash", "key"] = Field(
        default="dhash", description="How images are matched: perceptual hash, or 'key' (file hash).")
    image_max_distance: int = Field(
        default=4, ge=0, le=15,
        description="Largest Hamming distance between an image and an eval image.")
