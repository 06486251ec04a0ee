"""The filter stage: run filter steps in order, record every decision, write the funnel.

A sample dropped by one step is not shown to later steps; its decision from the step that
dropped it stays in ``decisions.jsonl``. Reasons start with a short code (``"below_threshold:
reward 3.10 <= tau 5"``) and the funnel counts drops and keeps per code.

Files written into ``context.work_dir``: ``decisions.jsonl`` (every :class:`FilterDecision`),
``kept.jsonl`` (the samples every step kept) and ``funnel.json`` (counts per step).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from medgr2 import artifacts
from medgr2.data import FilterDecision, VQASample
from medgr2.interfaces import Filter, StageContext
from medgr2.store import write_json, write_jsonl

def reason_code(reason: str) -> str:
    """The code of a decision reason: the text before the first colon (the whole reason without one)."""
    return reason.split(":", 1)[0].strip() or reason


def _check(name: str, index: int, shown: Sequence[VQASample], decisions: Any) -> list[FilterDecision]:
    where = f"filter step {index} ({name!r})"
    if not isinstance(decisions, list) or not all(isinstance(d, FilterDecision) for d in decisions):
        raise TypeError(f"{where} must return a list of FilterDecision, got {type(decisions).__name__}")
    if len(decisions) != len(shown):
        raise ValueError(f"{where} returned {len(decisions)} decisions for {len(shown)} samples; a filter "
                         "must return exactly one decision per input sample, in order")
    for s, d in zip(shown, decisions):
        if d.sample_id != s.id:
            raise ValueError(f"{where} returned a decision for {d.sample_id!r} where sample {s.id!r} was "
                             "expected; decisions must follow the input order")
        if not d.reason.strip():
            raise ValueError(f"{where} gave sample {s.id!r} a decision without a reason")
    return decisions


def apply_filters(
    filters: Sequence[tuple[str, Filter]],
    samples: Sequence[VQASample],
    kept: Sequence[VQASample],
    context: StageContext,
    *,
    allow_overlap: bool = False,
) -> tuple[list[VQASample], list[FilterDecision]]:
    """Run ``filters`` (``(step name, Filter)`` pairs) in order over ``samples``.

    Args:
        filters: The steps, each a name (for the funnel) and a built filter.
        samples: The candidate samples (scored when a step needs rewards).
        kept: D_gen, the samples kept in earlier cycles (for overlap and dedup checks).
        context: The stage context; files are written into ``context.work_dir``.
        allow_overlap: ``filters.allow_overlap``: passed to the filters as ``context.allow_overlap``.

    Returns:
        The samples every step kept (input order) and every decision made.
    """
    ctx = dataclasses.replace(context, allow_overlap=allow_overlap)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    reporter = ctx.reporter
    assert reporter is not None
    current = list(samples)
    decisions: list[FilterDecision] = []
    steps: list[dict[str, Any]] = []
    for index, (name, flt) in enumerate(filters):
        started = time.perf_counter()
        shown = current
        with reporter.task(f"filter {index + 1}/{len(filters)}: {name}", total=len(shown)) as task:
            made = _check(name, index, shown, flt.apply(shown, kept, ctx)) if shown else []
            dropped = sum(1 for d in made if not d.keep)
            task.advance(len(shown), dropped=dropped)
        decisions += made
        current = [s for s, d in zip(shown, made) if d.keep]
        codes = [(d.keep, reason_code(d.reason)) for d in made]
        steps.append({
            "index": index, "step": name, "in": len(shown), "kept": len(current), "dropped": dropped,
            "dropped_by_reason": dict(Counter(c for keep, c in codes if not keep).most_common()),
            "kept_by_reason": dict(Counter(c for keep, c in codes if keep).most_common()),
            "wall_s": round(time.perf_counter() - started, 4),
        })
    funnel = {"in": len(samples), "kept": len(current), "dgen_size": len(kept),
              "allow_overlap": allow_overlap, "steps": steps}
    write_jsonl(ctx.work_dir / artifacts.DECISIONS, decisions)
    write_jsonl(ctx.work_dir / artifacts.KEPT, current)
    write_json(ctx.work_dir / artifacts.FUNNEL, funnel)
    reporter.log(f"filter: kept {len(current)} of {len(samples)} samples after {len(filters)} step(s)")
    return current, decisions
