"""The generate stage (files, stop handling) and the ``medgr2 generate`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medgr2.testing.fake_servers import FakeOpenAIServer, FaultPlan
from medgr2.interfaces import StageContext
from medgr2.artifacts import GENERATION_LEDGER as LEDGER_FILE
from medgr2.artifacts import REJECTS as REJECTS_FILE
from medgr2.artifacts import SAMPLES as SAMPLES_FILE
from medgr2.stages.generate import generate
from medgr2.store import read_jsonl

FAKES_CONFIG = """
data: {sources: [{name: fake}]}
generation: {generator: {name: openai, options: {strategy: direct}}}
reward: {model: {name: fake}}
filters: {steps: [{name: fake}]}
policy: {sft: {name: fake}, grpo: null}
evaluation: {evaluator: {name: fake}}
"""


def test_stage_writes_samples_rejects_and_ledger(gen_registry, items_factory, tmp_path):
    items = items_factory(6)
    with FakeOpenAIServer(faults=FaultPlan(rates={"malformed": 0.5}, seed=1)) as server:
        gen = gen_registry.create("generator", "openai", {"base_url": server.base_url, "reask": False})
        context = StageContext(work_dir=tmp_path / "gen", registry=gen_registry)
        result = generate(gen, items[:5], context)
    samples = read_jsonl(context.work_dir / SAMPLES_FILE)
    rejects = read_jsonl(context.work_dir / REJECTS_FILE)
    ledger = json.loads((context.work_dir / LEDGER_FILE).read_text())
    assert len(samples) + len(rejects) == 5 and rejects and samples
    assert [s["id"] for s in samples] == [s.id for s in result.samples]
    assert all(r["reason"] == "malformed_json" for r in rejects)
    assert ledger["requests"] == 5 and ledger["rejects"] == {"malformed_json": len(rejects)}
    assert ledger["extra"]["completed"] is True


def test_stage_refuses_bad_input(gen_registry, items_factory, tmp_path):
    items = items_factory(2)
    gen = gen_registry.create("generator", "openai", {})
    context = StageContext(work_dir=tmp_path / "gen", registry=gen_registry)
    with pytest.raises(ValueError, match="unique"):
        generate(gen, [items[0], items[0]], context)
    with pytest.raises(TypeError, match="not a Generator"):
        generate(object(), items, context)


def test_cli_generate_runs_and_resumes(tmp_path):
    out, config = tmp_path / "out", tmp_path / "run.yaml"
    config.write_text(FAKES_CONFIG)
    with FakeOpenAIServer() as server:
        args = [
            sys.executable,
            "-c",
            "from medgr2.cli import main; main()",
            "--plugin",
            "medgr2.testing",
            "generate",
            str(config),
            "--set",
            f"generation.generator.options.base_url={server.base_url}",
            "--limit",
            "4",
            "--out",
            str(out),
            "--json",
        ]
        first = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr[-2000:]
        ledger = json.loads(first.stdout)
        assert ledger["successes"] == 4 and ledger["requests"] == 4 and server.attempts == 4
        second = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr[-2000:]
        assert json.loads(second.stdout)["extra"]["cache_hits"] == 4 and server.attempts == 4
    assert len(read_jsonl(out / "samples.jsonl")) == 4


def test_cli_reports_bad_options(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(FAKES_CONFIG)
    args = [
        sys.executable,
        "-c",
        "from medgr2.cli import main; main()",
        "--plugin",
        "medgr2.testing",
        "generate",
        str(config),
        "--set",
        "generation.generator.options.concurency=3",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "concurency" in proc.stderr
