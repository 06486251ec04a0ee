"""The loop over fake components: stage artifacts, resume decisions, kill -9 at several stages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PLUGIN = str(Path(__file__).with_name("killable_plugin.py"))


def _config(tmp_path: Path, cycles: int = 2) -> dict:
    hang = {"name": "hang"}
    return {
        "name": "fake", "runs_dir": str(tmp_path / "runs"), "cycles": cycles, "seed": 1,
        "data": {"sources": [{"name": "hang", "options": {"n": 24}}]},
        "generation": {"generator": hang},
        "reward": {"model": hang, "labelling": "match"},
        "filters": {"steps": [{"name": "hang", "options": {"tau": 1.0}}]},
        "policy": {"model": str(tmp_path / "base-policy"), "sft": hang, "grpo": hang},
        "evaluation": {"evaluator": hang, "question_builder": hang},
    }


def _write_config(tmp_path: Path, cycles: int = 2) -> Path:
    import yaml

    (tmp_path / "base-policy").mkdir(exist_ok=True)
    (tmp_path / "base-policy" / "config.json").write_text("{}")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path, cycles)))
    return path


def _kept_ids(run_dir: Path) -> list[list[str]]:
    from medgr2.data import VQASample
    from medgr2.store import read_jsonl

    return [[s.id for s in read_jsonl(d / "filter" / "kept.jsonl", VQASample)]
            for d in sorted(run_dir.glob("cycle-00[1-9]"))]


def _registry():
    from medgr2.plugins import load_registry

    return load_registry([PLUGIN])


def test_loop_runs_and_resume_skips_everything(tmp_path):
    from medgr2.loop import Loop, RunDirectoryExists, run
    from medgr2.config import load_config

    registry = _registry()
    cfg_path = _write_config(tmp_path)
    result = run(cfg_path, registry=registry)
    assert [c.cycle for c in result.cycles] == [1, 2]
    assert result.report is not None and result.report.exists()
    assert "<html" in result.report.read_text()
    run_dir = result.run_dir
    for stage in ("generate", "score", "filter", "sft", "grpo", "evaluate", "reward-update"):
        assert (run_dir / "cycle-001" / stage).is_dir(), stage
    assert (run_dir / "config.yaml").exists() and (run_dir / "versions.json").exists()
    ledger = (run_dir / "cycle-001" / "ledger.json").read_text()
    assert '"kept"' in ledger and '"rm_version"' in ledger

    with pytest.raises(RunDirectoryExists):
        run(cfg_path, registry=registry)

    cfg = load_config(cfg_path, registry=registry)
    loop = Loop(cfg, registry, reporter=__import__("medgr2.progress").progress.SilentReporter(), resume=True)
    loop.run()
    assert loop.executed == [] and len(loop.skipped) >= 14

    # a changed filter threshold redoes the filter stage and what depends on it, not generation
    cfg2 = load_config(cfg_path, ["filters.steps.0.options.tau=3.0"], registry=registry)
    loop2 = Loop(cfg2, registry, reporter=loop.reporter, resume=True)
    loop2.run()
    assert "cycle-001/filter" in loop2.executed
    assert "cycle-001/generate" not in loop2.executed and "cycle-001/score" not in loop2.executed


@pytest.mark.parametrize("stage", ["generate", "sft", "grpo", "reward"])
def test_kill9_then_resume_gives_the_same_kept_set(tmp_path, stage):
    from medgr2.loop import run

    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    reference = run(_write_config(ref_dir), registry=_registry())
    expected = _kept_ids(reference.run_dir)

    work = tmp_path / "killed"
    work.mkdir()
    cfg_path = _write_config(work)
    marker = work / "marker"
    env = {**os.environ, "MEDGR2_TEST_HANG": stage, "MEDGR2_TEST_MARKER": str(marker)}
    cmd = [sys.executable, "-m", "medgr2", "--plugin", PLUGIN, "run", str(cfg_path), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the hanging stage was never reached"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    env.pop("MEDGR2_TEST_HANG")
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _kept_ids(work / "runs" / "fake") == expected


def test_redone_stage_keeps_partial_work_only_for_the_same_inputs(tmp_path):
    from medgr2.config import load_config
    from medgr2.loop import Loop
    from medgr2.progress import SilentReporter

    registry = _registry()
    cfg_path = _write_config(tmp_path, cycles=1)
    Loop(load_config(cfg_path, registry=registry), registry, SilentReporter()).run()
    run_dir = tmp_path / "runs" / "fake"
    sft = run_dir / "cycle-001" / "sft"

    # an interrupted stage (no manifest record) redone with the same inputs keeps its partial work
    (sft / "partial-checkpoint").write_text("step 3")
    loop = Loop(load_config(cfg_path, registry=registry), registry, SilentReporter(), resume=True)
    record = loop.store.record(1, "sft")
    loop.store.mark_partial(1, "sft", record["inputs"], record["config"])
    loop.run()
    assert "cycle-001/sft" in loop.executed
    assert (sft / "partial-checkpoint").exists()

    # changed trainer options: the earlier partial work belongs to another run and is discarded
    changed = load_config(cfg_path, ["policy.sft.options.steps=3"], registry=registry)
    loop = Loop(changed, registry, SilentReporter(), resume=True)
    loop.run()
    assert "cycle-001/sft" in loop.executed
    assert not (sft / "partial-checkpoint").exists()
    assert "cycle-001/generate" in loop.skipped
