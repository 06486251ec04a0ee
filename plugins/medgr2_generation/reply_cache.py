"""The request engine's reply cache: an append-only JSONL of successful replies, durable before use,
indexed in 16 bytes a reply so memory stays flat in their number (see :class:`ResponseCache`), and the
:class:`Reply` it stores. Secrets are redacted from every reply before it is written.

Nothing here imports an SDK: the module is part of the light core (imported by
:mod:`medgr2_generation.engine`, which re-exports its names).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import threading
import time
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medgr2.store import JsonlAppender
from medgr2_generation.errors import SECRET_ENV_VARS, redact

__all__ = ["OffsetIndex", "Reply", "ResponseCache", "might_hold_secret"]


_now, _UTC = datetime.now, timezone.utc


@dataclass
class Reply:
    """One successful model reply (what the cache stores)."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str = ""
    created_at: str = field(default_factory=lambda: _now(_UTC).isoformat())

    @property
    def truncated(self) -> bool:
        """True when the model stopped at its output-token limit."""
        return self.finish_reason.lower() in {"length", "max_tokens"}



_SECRET_HINTS = ("sk-", "aiza", "bearer", "api", "authorization")
"""Lower-case substrings that every pattern of :func:`~medgr2_generation.errors.redact` needs to match."""


def might_hold_secret(text: str) -> bool:
    """False only when :func:`~medgr2_generation.errors.redact` would leave ``text`` as it is: none of its
    patterns' hints appears and no configured key's value does (a cheap test before the regexes). ASCII text
    (a reply, as a rule) is lower-cased and searched for each hint, about 15 times faster than the
    case-insensitive regex and the same answer there; other text takes the regex, whose case folding also
    matches non-ASCII look-alikes (``"ſk-"``, a Kelvin sign for ``k``) that ``str.lower`` keeps apart."""
    if text.isascii():
        low = text.lower()
        if any(hint in low for hint in _SECRET_HINTS):
            return True
    elif _HINTS.search(text):
        return True
    for value in _secret_values():
        if value in text:
            return True
    return False


_HINTS = re.compile("|".join(re.escape(h) for h in _SECRET_HINTS), re.IGNORECASE)


_SECRETS: list[Any] = [float("-inf"), ()]  # [when read, values]


def _secret_values() -> tuple[str, ...]:
    """The values of the key variables (:data:`SECRET_ENV_VARS`), read from the environment at most once a
    second (reading ``os.environ`` per reply costs more than the rest of the test)."""
    now = time.monotonic()
    if now - _SECRETS[0] > 1.0:
        _SECRETS[1] = tuple(v for n in sorted(SECRET_ENV_VARS) if (v := os.environ.get(n)))
        _SECRETS[0] = now
    return _SECRETS[1]


def _redacted(reply: Reply) -> Reply:
    """``reply`` with secrets redacted from its text (the same object when there are none)."""
    if not might_hold_secret(reply.text):
        return reply
    text = redact(reply.text)
    return reply if text == reply.text else Reply(**{**vars(reply), "text": text})


def _record(key: str, reply: Reply) -> bytes:
    """One cache line (the format every version of the cache wrote: ``{"key": ..., "reply": {...}}``)."""
    return ("".join(_RECORD_CHUNKS({"key": key, "reply": vars(reply)}, 0)) + "\n").encode("utf-8")


_datasync = getattr(os, "fdatasync", os.fsync)  # the appended bytes and the new size: all a reload needs


_RECORD_JSON = json.JSONEncoder(default=str, ensure_ascii=False).encode  # json.dumps(..., default=str, ensure_ascii=False)
_C_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)
if _C_MAKE_ENCODER is not None:
    # the chunks of _RECORD_JSON's output from an encoder made once (JSONEncoder.encode makes one per call), with
    # the same arguments but no circular-reference markers: a record is a flat dict of strings and numbers
    _RECORD_CHUNKS = _C_MAKE_ENCODER(None, str, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)
else:  # no C accelerator: the plain encoder

    def _RECORD_CHUNKS(record: Any, _level: int) -> tuple[str, ...]:
        return (_RECORD_JSON(record),)


class OffsetIndex:
    """``hash -> offset`` in about 16 bytes an entry (a dict of ints costs about 100): two sorted
    ``array('q')`` searched with :func:`bisect.bisect_left`, plus a dict of the newest entries that is
    merged in (with numpy) once it outgrows an eighth of them. A later entry for a hash replaces the
    earlier one."""

    def __init__(self) -> None:
        self._h = array("q")
        self._o = array("q")
        self._tail: dict[int, int] = {}

    def _main(self, h: int) -> int | None:
        i = bisect_left(self._h, h)
        return self._o[i] if i < len(self._h) and self._h[i] == h else None

    def get(self, h: int) -> int | None:
        offset = self._tail.get(h)
        return self._main(h) if offset is None else offset

    def __setitem__(self, h: int, offset: int) -> None:
        self._tail[h] = offset
        if len(self._tail) > max(4096, len(self._h) >> 3):
            self._merge()

    def _merge(self) -> None:
        import numpy as np

        n = len(self._tail)
        h = np.concatenate([np.frombuffer(self._h, np.int64), np.fromiter(self._tail.keys(), np.int64, n)])
        o = np.concatenate([np.frombuffer(self._o, np.int64), np.fromiter(self._tail.values(), np.int64, n)])
        order = np.argsort(h, kind="stable")  # equal hashes keep their order: the tail's entry comes last
        h, o = h[order], o[order]
        last = np.ones(len(h), dtype=bool)
        last[:-1] = h[:-1] != h[1:]
        self._h, self._o = array("q"), array("q")
        self._h.frombytes(h[last].tobytes())
        self._o.frombytes(o[last].tobytes())
        self._tail = {}

    def __len__(self) -> int:
        return len(self._h) + sum(1 for h in self._tail if self._main(h) is None)

    def values(self) -> list[int]:
        """Every entry's offset."""
        return [o for h, o in zip(self._h, self._o) if h not in self._tail] + list(self._tail.values())


class ResponseCache:
    """Append-only JSONL of successful replies by key (durable before use; torn last line ignored).

    Memory stays flat in the number of replies: only an index is held (a 64-bit hash of each key ->
    the byte offset of its line, 16 bytes a reply: :class:`OffsetIndex`); a hit reads its line back
    from the file (the page cache, in practice), and the full key on that line is checked, so a hash
    collision never serves the wrong reply.

    From async code, :meth:`put` hands records to one writer thread that *group-commits*: the records
    that arrive within :attr:`commit_window_s` are written, then fsync'd once, then all their ``put``
    calls return. Each reply is on disk before its request counts as done, yet one fsync serves
    many requests, and the event loop never blocks on the disk.
    """

    commit_window_s = 0.002
    """How long a group commit waits for more replies before it writes (and fsyncs) them: a fast disk would
    otherwise fsync once per reply. It delays when a request returns, never when the next one starts (the
    engine frees the request's slot before it waits for the cache)."""

    def __init__(self, path: str | Path, *, fsync: bool = True):
        self.path = Path(path)
        self._fsync = fsync
        self._index = OffsetIndex()  # hash(key) -> offset of its newest line
        self._exact: dict[str, int] = {}  # keys whose hash collides with another key's (almost never used)
        self._file: Any = None  # append handle (binary)
        self._reader: Any = None  # read handle (binary)
        self._writer: threading.Thread | None = None  # started by the first group commit
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()  # batches for the writer thread; None ends it
        self._pending: list[tuple[str, Reply, asyncio.Future[None]]] = []
        self._flushing = False
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # the loop whose callbacks run the commits
        self._load()

    def _load(self) -> None:
        """Index the file line by line (never all of it in memory: a resumed run stays flat in N too)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            offset = 0
            pending: tuple[int, bytes] | None = None  # the previous line, indexed once we know it is not the last
            for line in f:
                if pending is not None:
                    self._index_line(*pending, last=False)
                pending = (offset, line)
                offset += len(line)
            if pending is not None:
                self._index_line(*pending, last=True)

    def _index_line(self, offset: int, line: bytes, *, last: bool) -> None:
        if not line.strip():
            return
        try:
            rec = json.loads(line)
        except ValueError:
            if not last:
                raise ValueError(f"{self.path}: line at byte {offset} is not JSON; the reply cache is "
                                 "corrupt (delete it to ask every request again)") from None
            return  # a torn last line (kill -9 mid-write): dropped, cut before the next append
        if isinstance(rec, dict) and "key" in rec and "reply" in rec:
            self._remember(str(rec["key"]), offset)

    _hash = staticmethod(hash)  # str hashes: 64 bits, salted per process (the index lives in memory only)

    def _remember(self, key: str, offset: int) -> None:
        if key in self._exact:
            self._exact[key] = offset
            return
        h = self._hash(key)
        old = self._index.get(h)
        if old is None or self._key_at(old) == key:
            self._index[h] = offset
        else:  # another key has the same hash: this one is looked up by its full key
            self._exact[key] = offset

    def _line_at(self, offset: int) -> dict[str, Any] | None:
        if self._reader is None:
            if not self.path.exists():
                return None
            self._reader = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        self._reader.seek(offset)
        try:
            rec = json.loads(self._reader.readline())
        except ValueError:
            return None
        return rec if isinstance(rec, dict) else None

    def _key_at(self, offset: int) -> str | None:
        rec = self._line_at(offset)
        return None if rec is None else rec.get("key")

    def get(self, key: str) -> Reply | None:
        """The cached reply for ``key``, if any (read from the file)."""
        offset = self._exact.get(key) if self._exact else None
        if offset is None:
            offset = self._index.get(self._hash(key))
            if offset is None:
                return None
        rec = self._line_at(offset)
        if rec is None or rec.get("key") != key:
            return None
        return Reply(**rec["reply"])

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        return len(self._index) + len(self._exact)

    def keys(self) -> list[str]:
        """Every cached key (reads the file: for tests and tools, not the request path)."""
        out = [self._key_at(o) for o in (*self._index.values(), *self._exact.values())]
        return [k for k in out if k is not None]

    @property
    def entries(self) -> dict[str, Reply]:
        """Every cached reply by key (reads the whole file: for tests and tools, not the request path)."""
        return {k: r for k in self.keys() if (r := self.get(k)) is not None}

    def _open(self) -> Any:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            JsonlAppender(self.path, fsync=False).close()  # cuts a torn last line before we append
            self._file = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        return self._file

    def _write(self, records: list[tuple[str, Reply]]) -> list[int]:
        """Append ``records`` (one write, one flush + fsync); returns each record's offset."""
        f = self._open()
        lines = [_record(key, reply) for key, reply in records]
        offset, offsets = f.tell(), []
        for line in lines:
            offsets.append(offset)
            offset += len(line)
        f.write(b"".join(lines))
        f.flush()
        if self._fsync:
            _datasync(f.fileno())
        return offsets

    def add(self, key: str, reply: Reply) -> Reply:
        """Persist ``reply`` now, from synchronous code (returns it as stored, once it is on disk)."""
        reply = _redacted(reply)
        (offset,) = self._write([(key, reply)])
        self._remember(key, offset)
        return reply

    async def put(self, key: str, reply: Reply) -> Reply:
        """Persist ``reply`` (group commit on the writer thread); returns it as stored (secrets
        redacted) once it is on disk."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        stored = _redacted(reply)
        self._pending.append((key, stored, done))
        if not self._flushing or self._flush_loop is not loop:  # (a loop that ended mid-commit fires no more)
            self._flushing, self._flush_loop = True, loop
            self._schedule(loop)
        await done
        return stored

    # The group commit runs on callbacks, not a task: a timer (the commit window) hands the pending records to
    # the writer thread through a queue, and the thread hands the offsets (or its error) back with one
    # call_soon_threadsafe. One batch is on the thread at a time; what arrives meanwhile waits for the next.
    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._fsync and self.commit_window_s > 0:
            loop.call_later(self.commit_window_s, self._hand_over, loop)  # later replies share the fsync
        else:
            loop.call_soon(self._hand_over, loop)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, []
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="medgr2-cache", daemon=True)
            self._writer.start()
        self._jobs.put((loop, batch))

    def _write_loop(self) -> None:
        """The writer thread: write and fsync each batch, then hand the result to the loop."""
        while (job := self._jobs.get()) is not None:
            loop, batch = job
            try:
                result: list[int] | BaseException = self._write([(k, r) for k, r, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiter gets the disk error
                result = exc
            try:
                loop.call_soon_threadsafe(self._committed, loop, batch, result)
            except RuntimeError:  # the loop closed meanwhile: no one is waiting
                pass

    def _committed(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[str, Reply, asyncio.Future[None]]],
                   result: list[int] | BaseException) -> None:
        if isinstance(result, BaseException):
            for _, _, done in batch:
                if not done.done() and done.get_loop() is loop:
                    done.set_exception(result)
        else:
            for (key, _, done), offset in zip(batch, result):
                self._remember(key, offset)
                if not done.done() and done.get_loop() is loop:
                    done.set_result(None)
        if loop is not self._flush_loop:
            return  # a commit of a loop that has since been replaced: the new loop schedules its own
        if self._pending:
            self._schedule(loop)
        else:
            self._flushing = False

    def close(self) -> None:
        """Finish pending writes and close the file."""
        if self._writer is not None:
            self._jobs.put(None)
            self._writer.join()
            self._writer = None
        for attr in ("_file", "_reader"):
            handle = getattr(self, attr)
            if handle is not None:
                handle.close()
                setattr(self, attr, None)
