"""Reward-based selection: ``threshold`` (r > tau), ``top_k`` and the seeded ``rand_k`` baseline."""

from __future__ import annotations

import random
from collections.abc import Sequence

from medgr2.data import FilterDecision, VQASample, stable_hash
from medgr2.interfaces import StageContext
from medgr2_filters.keys import decide, reward_or_fail, reward_or_none
from medgr2_filters.options import RandKOptions, ThresholdOptions, TopKOptions


class ThresholdFilter:
    """Keeps samples whose reward total r > tau (the paper's D_high selection)."""

    name = "threshold"

    def __init__(self, options: ThresholdOptions):
        self.options = options

    def apply(self, samples: Sequence[VQASample], kept: Sequence[VQASample],
              context: StageContext) -> list[FilterDecision]:
        """One decision per sample: kept when its reward is strictly above tau."""
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


class TopKFilter:
    """Keeps the k highest-reward samples; equal rewards are ranked by input order (stable)."""

    name = "top_k"

    def __init__(self, options: TopKOptions):
        self.options = options

    def apply(self, samples: Sequence[VQASample], kept: Sequence[VQASample],
              context: StageContext) -> list[FilterDecision]:
        """One decision per sample, naming its rank among the input."""
        rewards = [reward_or_fail(s, self.name) for s in samples]
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
        """One decision per sample: kept when it is among the k drawn."""
        n, (k, why) = len(samples), self._k(samples)
        seed = self._seed(context)
        chosen = set(random.Random(seed).sample(range(n), k))
        out = []
        for i, s in enumerate(samples):
            detail = f"random draw of {k} of {n} (seed {seed}{why})"
            code = "sampled" if i in chosen else "not_sampled"
            out.append(decide(s, self.name, i in chosen, code, detail, reward_or_none(s)))
        return out
