"""Reward-based selection: ``threshold`` (r > tau), ``top_k`` and the seeded ``rand_k`` baseline.

Each can keep the mix: with ``stratify_by`` (modality, question_type, dataset, answer) the number to
keep is shared out over the strata in proportion to their sizes (:func:`apportion`) and each stratum
is ranked (or drawn) on its own, so a reward model that scores one modality lower as a whole cannot
empty it. ``answer`` keeps the class balance: a reward model that trusts the common diagnosis more
than a rare one would otherwise keep mostly the common one. Every call writes the mix before and
after (counts per modality, question type, dataset and answer, and per stratum) to
``mix-<filter>.json`` in ``context.work_dir`` (:func:`write_mix`).
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from medgr2.data import FilterDecision, VQASample, stable_hash
from medgr2.interfaces import StageContext
from medgr2_filters.keys import decide, reward_or_fail, reward_or_none
from medgr2_filters.options import RandKOptions, ThresholdOptions, TopKOptions

MIX_FIELDS = ("modality", "question_type", "dataset", "answer")


def stratum_value(sample: VQASample, field: str) -> str:
    """The sample's value of one stratification field (``dataset``: its source dataset, else ``unknown``;
    ``answer``: the answer text with case and runs of spaces folded)."""
    if field == "modality":
        return sample.modality.value
    if field == "question_type":
        return sample.question_type.value
    if field == "dataset":
        return sample.provenance.source_dataset or "unknown"
    if field == "answer":
        return " ".join(sample.answer.split()).casefold()
    raise ValueError(f"unknown stratification field {field!r}; use one of {', '.join(MIX_FIELDS)}")


def stratum_key(sample: VQASample, fields: Sequence[str]) -> str:
    """The stratum of ``sample``: its values of ``fields`` joined by ``/`` (``"all"`` without fields)."""
    return "/".join(stratum_value(sample, f) for f in fields) or "all"


def apportion(total: int, sizes: dict[str, int]) -> dict[str, int]:
    """Share ``total`` out over strata in proportion to ``sizes`` (largest remainder, exact integers).

    Each stratum gets ``floor(total * size / n)``; the samples left go one each to the largest
    remainders (ties: larger stratum, then name). The counts sum to ``total`` and none exceeds
    its stratum.

    >>> apportion(5, {"ct": 10, "xray": 6, "mri": 2})
    {'ct': 3, 'xray': 2, 'mri': 0}
    """
    n = sum(sizes.values())
    if not 0 <= total <= n:
        raise ValueError(f"cannot keep {total} of {n} samples")
    if n == 0:
        return {k: 0 for k in sizes}
    base = {k: total * size // n for k, size in sizes.items()}
    order = sorted(sizes, key=lambda k: (-((total * sizes[k]) % n), -sizes[k], k))
    for k in order[: total - sum(base.values())]:
        base[k] += 1
    return base


def _strata(samples: Sequence[VQASample], fields: Sequence[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[stratum_key(s, fields)].append(i)
    return dict(groups)


def mix(samples: Sequence[VQASample], decisions: Sequence[FilterDecision], stratify_by: Sequence[str] = ()
        ) -> dict[str, Any]:
    """Counts per modality, question type, dataset and answer (and per stratum) before and after a filter."""
    kept = [s for s, d in zip(samples, decisions, strict=True) if d.keep]
    out: dict[str, Any] = {"in": len(samples), "kept": len(kept), "stratify_by": list(stratify_by), "by": {}}
    for field in MIX_FIELDS:
        before = Counter(stratum_value(s, field) for s in samples)
        after = Counter(stratum_value(s, field) for s in kept)
        out["by"][field] = {"before": dict(sorted(before.items())),
                            "after": {k: after.get(k, 0) for k in sorted(before)}}
    if stratify_by:
        before = Counter(stratum_key(s, stratify_by) for s in samples)
        after = Counter(stratum_key(s, stratify_by) for s in kept)
        out["strata"] = {k: {"in": before[k], "kept": after.get(k, 0)} for k in sorted(before)}
    return out


def write_mix(name: str, samples: Sequence[VQASample], decisions: Sequence[FilterDecision],
              stratify_by: Sequence[str], context: StageContext) -> dict[str, Any]:
    """Write :func:`mix` as ``mix-<name>.json`` into ``context.work_dir`` (a later call of the same
    filter in the same folder replaces it) and return it."""
    facts = {"filter": name, **mix(samples, decisions, stratify_by)}
    work = context.work_dir
    work.mkdir(parents=True, exist_ok=True)
    (work / f"mix-{name}.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return facts


def _ranked_in_strata(samples: Sequence[VQASample], rewards: Sequence[float], total: int,
                      fields: Sequence[str]) -> tuple[dict[int, int], dict[str, int], dict[str, list[int]]]:
    """Rank within each stratum (ties: input order); return rank per sample, k per stratum, strata."""
    strata = _strata(samples, fields)
    ks = apportion(total, {k: len(v) for k, v in strata.items()})
    rank: dict[int, int] = {}
    for members in strata.values():
        for pos, i in enumerate(sorted(members, key=lambda i: -rewards[i])):
            rank[i] = pos + 1
    return rank, ks, strata


class ThresholdFilter:
    """Keeps samples whose reward total r > tau (the paper's D_high selection)."""

    name = "threshold"

    def __init__(self, options: ThresholdOptions):
        self.options = options

    def apply(self, samples: Sequence[VQASample], kept: Sequence[VQASample],
              context: StageContext) -> list[FilterDecision]:
        """One decision per sample: kept when its reward is strictly above tau (with ``stratify_by``:
        when among its stratum's share of the count above tau, see :class:`ThresholdOptions`)."""
        out = self._stratified(samples) if self.options.stratify_by else self._plain(samples)
        write_mix(self.name, samples, out, self.options.stratify_by, context)
        return out

    def _plain(self, samples: Sequence[VQASample]) -> list[FilterDecision]:
        tau = self.options.tau
        out = []
        for s in samples:
            r = reward_or_fail(s, self.name)
            if r > tau:
                out.append(decide(s, self.name, True, "above_threshold", f"reward {r:.3f} > tau {tau:g}", r))
            else:
                out.append(decide(s, self.name, False, "below_threshold",
                                  f"reward {r:.3f} <= tau {tau:g}", r))
        return out

    def _stratified(self, samples: Sequence[VQASample]) -> list[FilterDecision]:
        o = self.options
        rewards = [reward_or_fail(s, self.name) for s in samples]
        total = sum(1 for r in rewards if r > o.tau)
        rank, ks, strata = _ranked_in_strata(samples, rewards, total, o.stratify_by)
        key = {i: k for k, members in strata.items() for i in members}
        share = f"{total} of {len(samples)} above tau {o.tau:g}"
        out = []
        for i, s in enumerate(samples):
            r, k, n_s = rewards[i], ks[key[i]], len(strata[key[i]])
            detail = f"rank {rank[i]} of {n_s} in {key[i]} by reward {r:.3f} (keeps {k}; {share})"
            if rank[i] > k:
                out.append(decide(s, self.name, False, "outside_stratum_share", detail, r))
            elif o.min_reward is not None and r <= o.min_reward:
                out.append(decide(s, self.name, False, "below_floor",
                                  f"{detail}; reward <= min_reward {o.min_reward:g}", r))
            else:
                out.append(decide(s, self.name, True, "in_stratum_share", detail, r))
        return out


class TopKFilter:
    """Keeps the k highest-reward samples; equal rewards are ranked by input order (stable)."""

    name = "top_k"

    def __init__(self, options: TopKOptions):
        self.options = options

    def apply(self, samples: Sequence[VQASample], kept: Sequence[VQASample],
              context: StageContext) -> list[FilterDecision]:
        """One decision per sample, naming its rank among the input (or within its stratum)."""
        rewards = [reward_or_fail(s, self.name) for s in samples]
        fields = self.options.stratify_by
        if fields:
            out = self._stratified(samples, rewards, fields)
        else:
            out = self._plain(samples, rewards)
        write_mix(self.name, samples, out, fields, context)
        return out

    def _stratified(self, samples: Sequence[VQASample], rewards: list[float], fields: Sequence[str]
                    ) -> list[FilterDecision]:
        total = self.options.count(len(samples))
        rank, ks, strata = _ranked_in_strata(samples, rewards, total, fields)
        key = {i: k for k, members in strata.items() for i in members}
        out = []
        for i, s in enumerate(samples):
            k, n_s = ks[key[i]], len(strata[key[i]])
            detail = f"rank {rank[i]} of {n_s} in {key[i]} by reward {rewards[i]:.3f} (k={k} of {total})"
            code = "in_top_k" if rank[i] <= k else "outside_top_k"
            out.append(decide(s, self.name, rank[i] <= k, code, detail, rewards[i]))
        return out

    def _plain(self, samples: Sequence[VQASample], rewards: list[float]) -> list[FilterDecision]:
        n, k = len(samples), self.options.count(len(samples))
        order = sorted(range(n), key=lambda i: -rewards[i])  # sorted() is stable: ties keep input order
        rank = {i: pos + 1 for pos, i in enumerate(order)}
        out = []
        for i, s in enumerate(samples):
            detail = f"rank {rank[i]} of {n} by reward {rewards[i]:.3f} (k={k})"
            if rank[i] <= k:
                out.append(decide(s, self.name, True, "in_top_k", detail, rewards[i]))
            else:
                out.append(decide(s, self.name, False, "outside_top_k", detail, rewards[i]))
        return out


class RandKFilter:
    """Keeps k samples chosen uniformly at random, reproducibly from the seed (the RandK baseline).

    Without an explicit ``seed`` the choice is derived from the run seed and the cycle, so two
    cycles draw differently and a rerun draws the same.
    """

    name = "rand_k"

    def __init__(self, options: RandKOptions):
        self.options = options

    def _seed(self, context: StageContext) -> int:
        if self.options.seed is not None:
            return self.options.seed
        return int(stable_hash("rand_k", context.seed, context.cycle), 16)

    def _k(self, samples: Sequence[VQASample]) -> tuple[int, str]:
        tau = self.options.match_tau
        if tau is None:
            return self.options.count(len(samples)), ""
        k = sum(1 for s in samples if reward_or_fail(s, self.name) > tau)
        return k, f", k = samples with reward > {tau:g}"

    def apply(self, samples: Sequence[VQASample], kept: Sequence[VQASample],
              context: StageContext) -> list[FilterDecision]:
        """One decision per sample: kept when it is among the k drawn (per stratum with ``stratify_by``)."""
        n, (k, why) = len(samples), self._k(samples)
        seed = self._seed(context)
        fields = self.options.stratify_by
        out = []
        if not fields:
            chosen = set(random.Random(seed).sample(range(n), k))
            for i, s in enumerate(samples):
                detail = f"random draw of {k} of {n} (seed {seed}{why})"
                code = "sampled" if i in chosen else "not_sampled"
                out.append(decide(s, self.name, i in chosen, code, detail, reward_or_none(s)))
        else:
            strata = _strata(samples, fields)
            ks = apportion(k, {key: len(v) for key, v in strata.items()})
            chosen, where = set(), {}
            for key, members in strata.items():
                chosen.update(random.Random(stable_hash(seed, key)).sample(members, ks[key]))
                where.update((i, key) for i in members)
            for i, s in enumerate(samples):
                key = where[i]
                detail = (f"random draw of {ks[key]} of {len(strata[key])} in {key} "
                          f"({k} of {n} in all; seed {seed}{why})")
                code = "sampled" if i in chosen else "not_sampled"
                out.append(decide(s, self.name, i in chosen, code, detail, reward_or_none(s)))
        write_mix(self.name, samples, out, fields, context)
        return out
