"""Progress reporting: a small protocol, a rich implementation and a silent one.

Every long stage reports through a :class:`Reporter`::

    with reporter.task("generate", total=len(items)) as task:
        for ...:
            task.advance(1, rejected=1)     # extra counters show beside the bar

Library calls default to :class:`SilentReporter`; the CLI uses :class:`RichReporter`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Task(Protocol):
    """A running progress task."""

    def advance(self, n: int = 1, **counts: float) -> None:
        """Mark ``n`` units done; ``counts`` add to named counters (rejected, failed, tokens ...)."""
        ...

    def update(self, *, total: int | None = None, **fields: Any) -> None:
        """Change the total or set named fields (e.g. ``cost=1.25``)."""
        ...


@runtime_checkable
class Reporter(Protocol):
    """Where stages report progress and messages."""

    def task(self, name: str, total: int | None = None) -> Any:
        """A context manager yielding a :class:`Task`."""
        ...

    def log(self, message: str, *, style: str = "") -> None:
        """A one-line message."""
        ...


class _CountingTask:
    def __init__(self, name: str, total: int | None):
        self.name, self.total, self.done = name, total, 0
        self.counts: Counter[str] = Counter()
        self.fields: dict[str, Any] = {}
        self.started = time.perf_counter()

    def advance(self, n: int = 1, **counts: float) -> None:
        self.done += n
        self.counts.update(counts)

    def update(self, *, total: int | None = None, **fields: Any) -> None:
        if total is not None:
            self.total = total
        self.fields.update(fields)


class SilentReporter:
    """Reports nothing; keeps the counts of the last tasks for inspection (``.tasks``)."""

    def __init__(self) -> None:
        self.tasks: list[_CountingTask] = []
        self.messages: list[str] = []

    @contextmanager
    def task(self, name: str, total: int | None = None) -> Iterator[_CountingTask]:
        t = _CountingTask(name, total)
        self.tasks.append(t)
        yield t

    def log(self, message: str, *, style: str = "") -> None:
        self.messages.append(message)


class _RichTask(_CountingTask):
    def __init__(self, name: str, total: int | None, progress: Any, task_id: Any):
        super().__init__(name, total)
        self._progress, self._id = progress, task_id

    def _extras(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        parts = [f"{k} {v:g}" for k, v in sorted(self.counts.items())]
        parts += [f"{k} {v}" for k, v in self.fields.items()]
        parts.append(f"{self.done / elapsed:.1f}/s")
        return " · ".join(parts)

    def advance(self, n: int = 1, **counts: float) -> None:
        super().advance(n, **counts)
        self._progress.update(self._id, advance=n, extras=self._extras())

    def update(self, *, total: int | None = None, **fields: Any) -> None:
        super().update(total=total, **fields)
        self._progress.update(self._id, total=self.total, extras=self._extras())


class RichReporter:
    """Progress bars with counts, rate and ETA on stderr (``rich``)."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)

    @contextmanager
    def task(self, name: str, total: int | None = None) -> Iterator[_RichTask]:
        from rich.progress import (
            BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("{task.fields[extras]}"), console=self.console, transient=False,
        )
        with progress:
            task_id = progress.add_task(name, total=total, extras="")
            yield _RichTask(name, total, progress, task_id)

    def log(self, message: str, *, style: str = "") -> None:
        self.console.print(message, style=style or None, highlight=False)
