"""The train stage: ensure_policy builds or checks the starting policy; train_policy checks its inputs."""

from __future__ import annotations

import json

import pytest

from medgr2.config import PolicySection
from medgr2.stages.train import ensure_policy, train_policy
from medgr2.testing import FakeTrainer, FakeTrainerOptions


def test_ensure_policy_builds_a_tiny_model_once(tmp_path):
    policy = PolicySection(model=None, tiny_arch="llava")
    first = ensure_policy(policy, tmp_path, seed=1)
    assert (first / "config.json").is_file() and first.name == "tiny-llava-1"
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert ensure_policy(policy, tmp_path, seed=1) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tiny-")]  # no staging left behind


def test_ensure_policy_checks_a_given_folder(tmp_path, tiny_qwen):
    assert ensure_policy(PolicySection(model=str(tiny_qwen)), tmp_path) == tiny_qwen
    with pytest.raises(FileNotFoundError, match="neither a local folder with config.json"):
        ensure_policy(PolicySection(model=str(tmp_path / "missing")), tmp_path)


def test_train_policy_runs_the_trainer_and_records_the_result(tmp_path, tiny_qwen, samples, train_context):
    out = tmp_path / "out"
    result = train_policy(FakeTrainer(FakeTrainerOptions(steps=3)), samples, tiny_qwen, out, train_context)
    assert len(result.history) == 3
    assert json.loads((out / "train_result.json").read_text())["version"] == result.version
    with pytest.raises(ValueError, match="no samples"):
        train_policy(FakeTrainer(), [], tiny_qwen, out, train_context)
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        train_policy(FakeTrainer(), samples, tmp_path / "nope", out, train_context)
