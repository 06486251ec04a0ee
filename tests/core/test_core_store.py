"""The run store: atomic writes (crash mid-write), JSONL with torn lines, manifest and resume decisions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from medgr2.data import Reject
from medgr2.store import (
    JsonlAppender,
    RunStore,
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    hash_data,
    hash_files,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)


def leftovers(folder) -> list[str]:
    """Temporary files left beside the targets."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert leftovers(target.parent) == [] and leftovers(tmp_path) == []


def test_an_exception_mid_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write('{"v": 2, "half')
        raise RuntimeError("crash")
    assert read_json(target) == {"v": 1}
    assert leftovers(tmp_path) == []


def test_a_generator_failing_mid_jsonl_keeps_the_old_file(tmp_path):
    target = tmp_path / "rows.jsonl"
    write_jsonl(target, [{"i": 0}])

    def rows():
        yield {"i": 1}
        raise ValueError("bad row")

    with pytest.raises(ValueError):
        write_jsonl(target, rows())
    assert read_jsonl(target) == [{"i": 0}]


def test_a_killed_process_leaves_the_old_file_intact(tmp_path):
    """A hard crash (no cleanup, no exception handling) in the middle of a write."""
    target = tmp_path / "manifest.json"
    write_json(target, {"stages": {"old": 1}})
    script = textwrap.dedent(f"""
        import os
        from medgr2.store import atomic_open
        with atomic_open({str(target)!r}) as f:
            f.write('{{"stages": {{"new": ' + "x" * 100000)
            f.flush()
            os._exit(9)
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    assert read_json(target) == {"stages": {"old": 1}}
    # the torn temporary file is a hidden sibling, never the target
    assert all(name.startswith(".manifest.json.") for name in leftovers(tmp_path))


def test_jsonl_round_trip_with_models(tmp_path):
    rows = [Reject(stage="generate", id=str(i), reason="bad_reply", detail="é ✓") for i in range(3)]
    assert write_jsonl(tmp_path / "r.jsonl", rows) == 3
    assert read_jsonl(tmp_path / "r.jsonl", Reject) == rows
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_read_jsonl_skips_only_a_torn_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text('{"i": 0}\n\n{"i": 1}\n{"i": 2, "tor')
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}]
    with pytest.raises(ValueError):
        read_jsonl(path, skip_torn=False)
    path.write_text('{"i": 0}\n{"i": 1, "tor\n{"i": 2}\n')
    with pytest.raises(ValueError):  # corruption in the middle is not a torn append: it is an error
        read_jsonl(path)


def test_appender_repairs_a_torn_line_before_appending(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}\n{"i": 2, "tor')
    with JsonlAppender(path) as app:
        app.append({"i": 3})
        app.append(Reject(stage="s", id="x", reason="r"))
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"i": 0}, {"i": 1}, {"i": 3}, {"stage": "s", "id": "x", "reason": "r", "detail": ""}]


def test_appender_on_a_clean_or_new_file(tmp_path):
    path = tmp_path / "new" / "cache.jsonl"
    with JsonlAppender(path, fsync=False) as app:
        app.append({"i": 0})
    with JsonlAppender(path) as app:  # a clean file is left as it is
        app.append({"i": 1})
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}]
    torn_only = tmp_path / "torn.jsonl"
    torn_only.write_text('{"half')
    with JsonlAppender(torn_only) as app:
        app.append({"i": 0})
    assert read_jsonl(torn_only) == [{"i": 0}]


def test_appended_records_survive_a_kill(tmp_path):
    path = tmp_path / "cache.jsonl"
    script = textwrap.dedent(f"""
        import os
        from medgr2.store import JsonlAppender
        app = JsonlAppender({str(path)!r})
        for i in range(5):
            app.append({{"i": i}})
        app._f.write('{{"i": 5, "to')  # a record cut by the kill
        app._f.flush()
        os._exit(9)
    """)
    subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert read_jsonl(path) == [{"i": i} for i in range(5)]
    with JsonlAppender(path) as app:
        app.append({"i": 5})
    assert read_jsonl(path, skip_torn=False) == [{"i": i} for i in range(6)]


def test_hashes_follow_content(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("x")
    h1 = hash_files(a, b)
    assert h1 == hash_files(a, b) and len(h1) == 16
    b.write_text("")
    assert hash_files(a, b) != h1  # absent differs from empty
    a.write_text("y")
    assert len({h1, hash_files(a, b)}) == 2
    assert hash_data({"a": 1, "b": [1, 2]}) == hash_data({"b": [1, 2], "a": 1})
    assert hash_data({"a": 1}) != hash_data({"a": 2})
    r = Reject(stage="s", id="1", reason="r")
    assert hash_data(r) == hash_data(r.model_dump(mode="json"))


class TestResume:
    """The manifest decides which stages a resumed run skips."""

    def setup_stage(self, tmp_path):
        store = RunStore(tmp_path / "run")
        inputs = tmp_path / "items.jsonl"
        write_jsonl(inputs, [{"id": 1}, {"id": 2}])
        config = {"generator": {"name": "fake", "options": {"n_options": 4}}}
        return store, inputs, config

    def test_layout(self, tmp_path):
        store, _, _ = self.setup_stage(tmp_path)
        d = store.stage_dir(2, "generate")
        assert d == tmp_path / "run" / "cycle-002" / "generate" and d.is_dir()
        assert RunStore.key(2, "generate") == "cycle-002/generate"
        assert store.manifest() == {"stages": {}}

    def test_same_inputs_and_config_skip(self, tmp_path):
        store, inputs, config = self.setup_stage(tmp_path)
        store.mark_complete(1, "generate", hash_files(inputs), hash_data(config), {"samples": 2})
        reopened = RunStore(tmp_path / "run")  # a new process resuming
        assert reopened.is_complete(1, "generate", hash_files(inputs), hash_data(config))
        assert reopened.record(1, "generate")["outputs"] == {"samples": 2}

    def test_changed_input_redoes(self, tmp_path):
        store, inputs, config = self.setup_stage(tmp_path)
        store.mark_complete(1, "generate", hash_files(inputs), hash_data(config))
        write_jsonl(inputs, [{"id": 1}, {"id": 3}])
        assert not store.is_complete(1, "generate", hash_files(inputs), hash_data(config))

    def test_changed_config_redoes(self, tmp_path):
        store, inputs, config = self.setup_stage(tmp_path)
        store.mark_complete(1, "generate", hash_files(inputs), hash_data(config))
        config["generator"]["options"]["n_options"] = 3
        assert not store.is_complete(1, "generate", hash_files(inputs), hash_data(config))

    def test_other_stages_and_cycles_are_not_complete(self, tmp_path):
        store, inputs, config = self.setup_stage(tmp_path)
        store.mark_complete(1, "generate", hash_files(inputs), hash_data(config))
        assert not store.is_complete(2, "generate", hash_files(inputs), hash_data(config))
        assert not store.is_complete(1, "score", hash_files(inputs), hash_data(config))
        assert store.record(1, "score") is None

    def test_a_partial_stage_is_never_complete(self, tmp_path):
        store, inputs, config = self.setup_stage(tmp_path)
        store.mark_partial(1, "generate", hash_files(inputs), hash_data(config), {"samples": 4})
        assert not store.is_complete(1, "generate", hash_files(inputs), hash_data(config))
        assert store.record(1, "generate")["partial"] is True
        store.mark_complete(1, "generate", hash_files(inputs), hash_data(config), {"samples": 15})
        assert store.is_complete(1, "generate", hash_files(inputs), hash_data(config))
        assert "partial" not in store.record(1, "generate")

    def test_a_crash_before_mark_complete_redoes_the_stage(self, tmp_path):
        store, inputs, config = self.setup_stage(tmp_path)
        write_jsonl(store.stage_dir(1, "generate") / "samples.jsonl", [{"half": "done"}])
        assert not store.is_complete(1, "generate", hash_files(inputs), hash_data(config))

    def test_save_config_writes_yaml_and_versions(self, tmp_path):
        store, _, _ = self.setup_stage(tmp_path)
        store.save_config({"name": "x", "seed": 3}, {"medgr2": "0.1.0", "plugins": {"fake": None}})
        import yaml

        assert yaml.safe_load((store.root / "config.yaml").read_text()) == {"name": "x", "seed": 3}
        assert read_json(store.root / "versions.json")["medgr2"] == "0.1.0"
        assert not [p for p in os.listdir(store.root) if p.endswith(".tmp")]


def test_appender_keeps_a_complete_last_line_without_newline(tmp_path):
    path = tmp_path / "other_tool.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}')
    with JsonlAppender(path) as app:
        app.append({"i": 2})
    assert read_jsonl(path, skip_torn=False) == [{"i": 0}, {"i": 1}, {"i": 2}]
