"""``overlap``: drop samples already in D_gen unless overlap is allowed (Algorithm 1, lines 6-8)."""

from __future__ import annotations

from collections.abc import Sequence

from medgr2.data import FilterDecision, VQASample
from medgr2.interfaces import StageContext
from medgr2_filters.keys import content_key, decide, reward_or_none
from medgr2_filters.options import OverlapOptions


class OverlapFilter:
    """Drops a sample whose id or content key (question, answer, images) is already in D_gen.

    With overlap allowed (the option, or ``filters.allow_overlap`` passed by the stage), such samples
    are kept and their decision says that they overlap.
    """

    name = "overlap"

    def __init__(self, options: OverlapOptions):
        self.options = options

    def allowed(self, context: StageContext) -> bool:
        """Whether overlap is allowed: the option when set, else the run's ``filters.allow_overlap``."""
        if self.options.allow_overlap is not None:
            return self.options.allow_overlap
        return context.allow_overlap

    def apply(self, samples: Sequence[VQASample], kept: Sequence[VQASample],
              context: StageContext) -> list[FilterDecision]:
        """One decision per sample: ``new``, ``in_dgen`` (dropped) or ``in_dgen_allowed`` (kept)."""
        allow = self.allowed(context)
        ids = {s.id for s in kept}
        by_key = {content_key(s): s.id for s in kept}
        out = []
        for s in samples:
            r = reward_or_none(s)
            if s.id in ids:
                match = f"same id {s.id} as a D_gen sample"
            elif (other := by_key.get(content_key(s))) is not None:
                match = f"same question, answer and image as D_gen sample {other}"
            else:
                out.append(decide(s, self.name, True, "new", "not in D_gen", r))
                continue
            if allow:
                out.append(decide(s, self.name, True, "in_dgen_allowed", f"{match} (allow_overlap set)", r))
            else:
                out.append(decide(s, self.name, False, "in_dgen",
                                  f"{match} (set filters.allow_overlap to keep)", r))
        return out
