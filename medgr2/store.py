"""The run store: one directory per run, one folder per cycle and stage, atomic writes, resume.

Layout::

    runs/<name>/
      config.yaml            the resolved config (secrets never included)
      versions.json          medgr2 and every loaded plugin's version
      manifest.json          completed stages with the hashes of their inputs and config
      cycle-001/generate/    samples.jsonl, rejects.jsonl, ledger.json, cache ...
      cycle-001/score/ ...

Artifacts are JSONL (one JSON object per line: ``datasets.load_dataset("json", data_files=...)``
reads them) plus whatever binary files a stage needs. Every file is written to a temporary name,
fsync'd and renamed, so a kill leaves either the old file or the new one, never a torn one.
A stage is skipped on ``--resume`` only when the manifest records it complete with the same
input and config hashes; otherwise it is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from medgr2.artifacts import MANIFEST

M = TypeVar("M", bound=BaseModel)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path) as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` (plain data or a pydantic model) as pretty JSON, atomically."""
    if isinstance(data, BaseModel):
        text = data.model_dump_json(indent=2)
    else:
        text = json.dumps(data, indent=2, default=str, ensure_ascii=False)
    atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike[str], model: type[M] | None = None) -> Any:
    """Read a JSON file (validated into ``model`` when given)."""
    text = Path(path).read_text(encoding="utf-8")
    return model.model_validate_json(text) if model is not None else json.loads(text)


def _line(record: Any) -> str:
    if isinstance(record, BaseModel):
        return record.model_dump_json()
    return json.dumps(record, default=str, ensure_ascii=False)


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> int:
    """Write records (pydantic models or plain data) as JSONL, atomically; returns the count."""
    n = 0
    with atomic_open(path) as f:
        for r in records:
            f.write(_line(r) + "\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike[str], model: type[M] | None = None, *, skip_torn: bool = True) -> list[Any]:
    """Read a JSONL file; a torn last line (a kill mid-append) is ignored when ``skip_torn``."""
    out: list[Any] = []
    p = Path(path)
    if not p.exists():
        return out
    lines = p.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(model.model_validate_json(line) if model is not None else json.loads(line))
        except ValueError:
            if skip_torn and i == len(lines) - 1:
                break
            raise
    return out


class JsonlAppender:
    """Append-only JSONL with one flush + fsync per record (for caches that must survive kill -9)."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._f = open(self.path, "a", encoding="utf-8")
        self._fsync = fsync

    def _repair(self) -> None:
        """Cut a torn last line so the next append starts on a fresh line.

        A last line that is complete JSON but lacks its newline (written by another tool) is
        kept and terminated instead.
        """
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            data = f.seek(0) or f.read()
            cut = data.rfind(b"\n") + 1
            try:
                json.loads(data[cut:])
            except ValueError:
                f.truncate(cut)
            else:
                f.write(b"\n")

    def append(self, record: Any) -> None:
        """Write one record as a line, flushed (and fsync'd unless ``fsync=False``)."""
        self._f.write(_line(record) + "\n")
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())

    def append_many(self, records: Iterable[Any]) -> None:
        """Write several records, then flush and fsync once (group commit: all are durable on return)."""
        for record in records:
            self._f.write(_line(record) + "\n")
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def hash_files(*paths: str | os.PathLike[str]) -> str:
    """sha256 over the contents of files (missing files hash as absent)."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(str(p.name).encode())
        if p.is_file():
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(b"<absent>")
    return h.hexdigest()[:16]


def hash_data(data: Any) -> str:
    """sha256 of JSON-serialisable data (pydantic models allowed)."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class RunStore:
    """A run directory: stage folders, the manifest and resume decisions."""

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.root = Path(run_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / MANIFEST

    def stage_dir(self, cycle: int, stage: str) -> Path:
        """``cycle-NNN/<stage>/`` (cycle 0 is for run-level stages such as seeding)."""
        d = self.root / f"cycle-{cycle:03d}" / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    @staticmethod
    def key(cycle: int, stage: str) -> str:
        """The manifest key of a stage: ``cycle-NNN/<stage>``."""
        return f"cycle-{cycle:03d}/{stage}"

    def manifest(self) -> dict[str, Any]:
        """The manifest (``{"stages": {}}`` before any stage completed)."""
        if not self.manifest_path.exists():
            return {"stages": {}}
        return read_json(self.manifest_path)

    def is_complete(self, cycle: int, stage: str, inputs_hash: str, config_hash: str) -> bool:
        """True when the stage completed with exactly these inputs and config."""
        rec = self.manifest()["stages"].get(self.key(cycle, stage))
        return (bool(rec) and not rec.get("partial") and rec.get("inputs") == inputs_hash
                and rec.get("config") == config_hash)

    def record(self, cycle: int, stage: str) -> dict[str, Any] | None:
        """The manifest record of a completed stage (hashes, outputs, time), else ``None``."""
        return self.manifest()["stages"].get(self.key(cycle, stage))

    def mark_complete(self, cycle: int, stage: str, inputs_hash: str, config_hash: str,
                      outputs: dict[str, Any] | None = None) -> None:
        """Record the stage as complete (atomically; the manifest is the commit point)."""
        m = self.manifest()
        m["stages"][self.key(cycle, stage)] = {
            "inputs": inputs_hash, "config": config_hash, "outputs": outputs or {},
            "completed_at": datetime.now(timezone.utc).isoformat(),
        }
        write_json(self.manifest_path, m)

    def mark_partial(self, cycle: int, stage: str, inputs_hash: str, config_hash: str,
                     outputs: dict[str, Any] | None = None) -> None:
        """Record that the stage stopped before finishing: never complete, redone (from its partial work) on resume."""
        m = self.manifest()
        m["stages"][self.key(cycle, stage)] = {
            "inputs": inputs_hash, "config": config_hash, "outputs": outputs or {}, "partial": True,
            "stopped_at": datetime.now(timezone.utc).isoformat(),
        }
        write_json(self.manifest_path, m)

    def save_config(self, resolved: dict[str, Any], versions: dict[str, Any]) -> None:
        """Write ``config.yaml`` (the resolved config: secrets are never part of it) and ``versions.json``."""
        from medgr2.config import dump_yaml

        atomic_write_text(self.root / "config.yaml", dump_yaml(resolved))
        write_json(self.root / "versions.json", versions)
