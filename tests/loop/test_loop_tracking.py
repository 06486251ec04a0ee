"""``report_to: [tensorboard]`` (issue 21): every stage logs its counts and timings, and SFT and GRPO their
curves, into one TensorBoard folder of the run (offline); a typo is a config error; a missing package is a
clear error naming the extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from medgr2.config import ConfigError, load_config
from medgr2.loop import Loop
from medgr2.plugins import load_registry
from medgr2.progress import SilentReporter
from medgr2.testing import fake_config_data, make_registry
from medgr2.tracking import Tracker, TrackerUnavailable


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted({p.parent for p in folder.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def _config(tmp_path: Path, **policy) -> dict:
    data = fake_config_data()
    data.update({"name": "tracked", "runs_dir": str(tmp_path / "runs"), "report_to": ["tensorboard"],
                 "data": {"sources": [{"name": "fake", "options": {"n": 9}}]}})
    data["reward"].update({"min_retrain_examples": 2})
    data["policy"].update({"grpo": None, **policy})
    return data


def test_every_stage_logs_its_counts_and_times_to_tensorboard(tmp_path):
    registry = make_registry()
    loop = Loop(load_config(data=_config(tmp_path), registry=registry), registry, SilentReporter())
    result = loop.run()
    logged = scalars(result.run_dir / "tensorboard")
    for tag in ("seed/items", "eval-set/samples", "reward-init/wall_s", "generate/samples", "generate/requests",
                "score/scored", "filter/kept", "sft/wall_s", "evaluate/accuracy", "reward-update/labelled"):
        assert tag in logged, tag
    assert logged["filter/kept"] == [(1, float(result.cycles[0].ledger.kept))]  # step = the cycle
    assert logged["seed/items"][0][0] == 0  # run-level stages at step 0


def test_sft_and_grpo_write_their_curves_into_the_same_run(tmp_path):
    registry = load_registry(["medgr2.testing"])
    policy = {"tiny_arch": "qwen2_5_vl",
              "sft": {"name": "sft", "options": {"max_steps": 2, "per_device_train_batch_size": 2, "num_threads": 1,
                                                 "logging_steps": 1}},
              "grpo": {"name": "grpo", "options": {"max_steps": 1, "per_device_train_batch_size": 2,
                                                   "num_generations": 2, "max_completion_length": 4,
                                                   "num_threads": 1, "logging_steps": 1,
                                                   "reward": [{"term": "answer_match"}]}}}
    data = _config(tmp_path, **policy)
    data["reward"]["retrain_each_cycle"] = False
    loop = Loop(load_config(data=data, registry=registry), registry, SilentReporter())
    result = loop.run()
    root = result.run_dir / "tensorboard"
    sft, grpo = scalars(root / "cycle-001-sft"), scalars(root / "cycle-001-grpo")
    assert any(tag.endswith("loss") for tag in sft), sorted(sft)
    assert any("reward" in tag for tag in grpo), sorted(grpo)
    assert scalars(root / "stages")["sft/optimizer_steps"] == [(1, 2.0)]


def test_a_typo_in_report_to_is_a_config_error():
    with pytest.raises(ConfigError, match="report_to.0"):
        load_config(data={"report_to": ["tensorbord"]})


def test_a_missing_tracker_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(TrackerUnavailable, match=r"pip install 'medgr2\[tensorboard\]'"):
        Tracker(["tensorboard"], tmp_path)
