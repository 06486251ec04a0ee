"""The generation stage: run a generator over seed items and write what it made.

Files written (atomically) into ``context.work_dir``: ``samples.jsonl`` (valid
:class:`~medgr2.data.VQASample` records), ``rejects.jsonl`` (every :class:`~medgr2.data.Reject`
with its reason) and ``ledger.json`` (requests, successes, rejects by reason, retries, tokens,
cost, wall time). API generators also keep their reply cache there (``requests.jsonl``), which
is what makes a re-run request only the missing work.

A generator that offers ``generate_to(items, context, sink)`` (the API generators) is streamed: it hands
each result to ``sink`` in input order as soon as it is done and keeps none, and the stage writes it at
once (:class:`ResultWriter`) into temporary files that are fsync'd and renamed over ``samples.jsonl`` and
``rejects.jsonl`` when the generator returns (its :class:`~medgr2.data.Ledger`). Memory stays flat in the
number of items; the :class:`~medgr2.data.GenerationResult` returned then reads its samples and rejects
back from those files on access (:class:`JsonlRecords`). Other generators' ``generate`` results are
written when they return.

SIGINT/SIGTERM during the stage set ``context.stop``: in-flight requests finish and are
cached, the files above are written with what is done (``ledger.extra["completed"]`` is
false), and a second signal aborts at once.
"""

from __future__ import annotations

import itertools
import operator
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from medgr2.artifacts import GENERATION_LEDGER, REJECTS, SAMPLES
from medgr2.data import GenerationResult, Ledger, Reject, SeedItem, VQASample
from medgr2.interfaces import Generator, SeedSet, StageContext
from medgr2.store import atomic_open, write_json, write_jsonl

M = TypeVar("M", bound=BaseModel)


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


class ResultWriter:
    """The generate stage's sink for a streaming generator: ``writer(result)`` appends a
    :class:`~medgr2.data.VQASample` to ``samples.jsonl`` or a :class:`~medgr2.data.Reject` to
    ``rejects.jsonl`` (one JSON line each, as :func:`~medgr2.store.write_jsonl` writes them), into temporary
    files beside them (:func:`~medgr2.store.atomic_open`). Leaving the ``with`` block normally fsyncs both and
    renames them over the stage's files; leaving it on an exception removes them (the old files stay).
    Counts what it wrote: :attr:`samples`, :attr:`rejects` and :attr:`reasons` (rejects by reason)."""

    def __init__(self, work_dir: str | os.PathLike[str]):
        self.work_dir = Path(work_dir)
        self.samples = 0
        self.rejects = 0
        self.reasons: Counter[str] = Counter()
        self._stack = ExitStack()
        self._samples: Any = None
        self._rejects: Any = None

    def __enter__(self) -> ResultWriter:  # noqa: PYI034 - typing.Self needs Python 3.11
        with ExitStack() as stack:
            self._samples = stack.enter_context(atomic_open(self.work_dir / SAMPLES))
            self._rejects = stack.enter_context(atomic_open(self.work_dir / REJECTS))
            self._stack = stack.pop_all()
        return self

    def __call__(self, result: VQASample | Reject) -> None:
        if isinstance(result, VQASample):
            self._samples.write(result.model_dump_json() + "\n")
            self.samples += 1
        elif isinstance(result, Reject):
            self._rejects.write(result.model_dump_json() + "\n")
            self.rejects += 1
            self.reasons[result.reason] += 1
        else:
            raise TypeError(f"a generator handed the stage a {type(result).__name__}; a sink takes VQASample "
                            "or Reject records only")

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(*exc)  # type: ignore[arg-type]


class JsonlRecords(Sequence[M], Generic[M]):
    """The ``count`` records of a JSONL file, read back (and validated into ``model``) on access, so none is
    held: what a streamed :func:`generate` returns as its samples and rejects. ``len`` is free; iterating
    reads the file once; an index reads up to its record, a slice all of them. Compares equal to a tuple or list of the same
    records. The file is the stage's: read it before the stage runs again into the same folder."""

    def __init__(self, path: str | os.PathLike[str], model: type[M], count: int):
        self.path, self.model, self._count = Path(path), model, count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[M]:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield self.model.model_validate_json(line)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self)[index]  # reads them all: a slice asks for many
        i = operator.index(index)
        i = i + self._count if i < 0 else i
        if not 0 <= i < self._count:
            raise IndexError(f"record {index} of {self._count}")
        return next(itertools.islice(self, i, None))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (tuple, list, JsonlRecords)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"JsonlRecords({str(self.path)!r}, {self.model.__name__}, {self._count} records)"


def _remove_stale_temporaries(work_dir: Path) -> None:
    """Remove the temporary files a killed run left beside the stage's files (:func:`~medgr2.store.atomic_open`
    names them ``.<name>.<random>.tmp``): a run that was not killed removed or renamed its own."""
    for name in (SAMPLES, REJECTS):
        for tmp in work_dir.glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass


def generate(
    generator: Generator,
    items: Sequence[SeedItem],
    context: StageContext,
) -> GenerationResult:
    """Run ``generator`` over ``items`` (see :func:`select_items`) and write the stage files.

    Returns the generator's :class:`~medgr2.data.GenerationResult` (for a streamed generator, one whose
    samples and rejects are :class:`JsonlRecords` over the files written: see the module docstring). Safe to
    call again after a crash or a stop: the generator redoes only the missing work.
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
    del ids
    context.work_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(context.work_dir)
    stream = getattr(generator, "generate_to", None)
    with graceful_stop(context.stop, context.reporter):
        if callable(stream):
            with ResultWriter(context.work_dir) as writer:
                ledger = stream(items, context, writer)
            if not isinstance(ledger, Ledger):
                ledger = Ledger(stage="generate", successes=writer.samples, rejects=dict(writer.reasons))
            result = GenerationResult.model_construct(  # the records stay in the files
                samples=JsonlRecords(context.work_dir / SAMPLES, VQASample, writer.samples),
                rejects=JsonlRecords(context.work_dir / REJECTS, Reject, writer.rejects),
                ledger=ledger,
            )
        else:
            result = generator.generate(items, context)
    if not callable(stream):
        write_jsonl(context.work_dir / SAMPLES, result.samples)
        write_jsonl(context.work_dir / REJECTS, result.rejects)
    ledger = result.ledger
    if "completed" not in ledger.extra:
        done = len(result.samples) + len(result.rejects)
        ledger = ledger.model_copy(update={"extra": {**ledger.extra, "completed": done >= len(items)}})
        result = result.model_copy(update={"ledger": ledger})
    write_json(context.work_dir / GENERATION_LEDGER, ledger)
    return result
