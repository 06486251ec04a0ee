"""The generation stage: run a generator over seed items and write what it made.

Files written (atomically) into ``context.work_dir``: ``samples.jsonl`` (valid
:class:`~medgr2.data.VQASample` records), ``rejects.jsonl`` (every :class:`~medgr2.data.Reject`
with its reason) and ``ledger.json`` (requests, successes, rejects by reason, retries, tokens,
cost, wall time). API generators also keep their reply cache there (``requests.jsonl``), which
is what makes a re-run request only the missing work.

SIGINT/SIGTERM during the stage set ``context.stop``: in-flight requests finish and are
cached, the files above are written with what is done (``ledger.extra["completed"]`` is
false), and a second signal aborts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from medgr2.artifacts import GENERATION_LEDGER, REJECTS, SAMPLES
from medgr2.data import GenerationResult, SeedItem
from medgr2.interfaces import Generator, SeedSet, StageContext
from medgr2.store import write_json, write_jsonl


def select_items(seed: SeedSet, *, max_items: int | None, run_seed: int, limit: int | None = None) -> list[SeedItem]:
    """The seed items one cycle generates from: the train split, at most ``max_items`` of them drawn at
    random with ``run_seed`` (``data.max_items``), then the first ``limit`` (``generation.limit``, or
    ``medgr2 generate --limit``). The loop and ``medgr2 generate`` both select with this."""
    import random

    items = [i for i in seed.items if i.split == "train"]
    if max_items is not None and len(items) > max_items:
        items = random.Random(run_seed).sample(items, max_items)
    return items[:limit] if limit is not None else items


@contextmanager
def graceful_stop(stop: threading.Event, reporter: Any = None) -> Iterator[None]:
    """While active, SIGINT/SIGTERM set ``stop`` (a second signal raises ``KeyboardInterrupt``).

    Does nothing outside the main thread (signal handlers can only be installed there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        if hasattr(stop, "request"):
            stop.request(signum)
        else:
            stop.set()
        if reporter is not None:
            reporter.log(
                f"{signal.Signals(signum).name}: finishing in-flight requests and keeping finished work "
                "(send it again to abort)",
                style="yellow",
            )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def generate(
    generator: Generator,
    items: Sequence[SeedItem],
    context: StageContext,
) -> GenerationResult:
    """Run ``generator`` over ``items`` (see :func:`select_items`) and write the stage files.

    Returns the generator's :class:`~medgr2.data.GenerationResult`. Safe to call again after a
    crash or a stop: the generator redoes only the missing work.
    """
    if not isinstance(generator, Generator):
        raise TypeError(
            f"{type(generator).__name__} is not a Generator: it needs a generate(items, context) method"
        )
    items = list(items)
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"seed item ids must be unique; repeated: {dup}")
    context.work_dir.mkdir(parents=True, exist_ok=True)
    with graceful_stop(context.stop, context.reporter):
        result = generator.generate(items, context)
    write_jsonl(context.work_dir / SAMPLES, result.samples)
    write_jsonl(context.work_dir / REJECTS, result.rejects)
    ledger = result.ledger
    if "completed" not in ledger.extra:
        done = len(result.samples) + len(result.rejects)
        ledger = ledger.model_copy(update={"extra": {**ledger.extra, "completed": done >= len(items)}})
        result = result.model_copy(update={"ledger": ledger})
    write_json(context.work_dir / GENERATION_LEDGER, ledger)
    return result
