"""Config validation reaches components named inside other components' options (GRPO reward terms), the
graded-set builder's options (``reward.grading`` / ``reward.references``) and fields that name a component."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medgr2.config import ConfigError, load_config
from medgr2.plugins import load_registry

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def problems(registry, data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(data=data, registry=registry)
    return info.value.problems


def test_the_defaults_and_the_short_forms_are_valid(registry):
    cfg = load_config(data={"reward": {"grading": {"grades": [1, 3]}, "references": [
        {"format": "text", "path": "r.txt"}]}}, registry=registry)
    assert cfg.reward.grade_set.name == "four-grade"
    assert cfg.reward.grade_set.options == {"grading": {"grades": [1, 3]},
                                            "references": [{"format": "text", "path": "r.txt"}]}


def test_a_typo_inside_grading_is_caught(registry):
    found = problems(registry, {"reward": {"grading": {"rats": 1, "deletion_rate": 0.3}}})
    assert len(found) == 1
    assert found[0].startswith("reward.grade_set.options.grading.rats:") and "grade_set 'four-grade'" in found[0]


def test_a_typo_inside_references_is_caught(registry):
    found = problems(registry, {"reward": {"references": [{"format": "text", "pth": "r.txt"}]}})
    assert any(p.startswith("reward.grade_set.options.references.0.pth:") for p in found), found
    found = problems(registry, {"reward": {"references": [{"format": "xml", "path": "r.txt"}]}})
    assert any("references.0.format" in p for p in found), found


def test_a_misspelled_reward_term_and_a_bad_term_option_are_caught(registry):
    grpo = {"name": "grpo", "options": {"reward": [{"term": "reward_modle", "weight": 0.8},
                                                   {"term": "format", "options": {"partal": 0.3}}]}}
    found = problems(registry, {"policy": {"grpo": grpo}})
    assert len(found) == 2, found
    assert found[0].startswith("policy.grpo.options.reward.0.name: unknown reward_term 'reward_modle'")
    assert "Did you mean 'reward_model'?" in found[0]
    assert found[1].startswith("policy.grpo.options.reward.1.options.partal: unknown option.")
    assert "Did you mean 'partial'?" in found[1]


def test_fields_naming_a_component_are_checked(registry):
    found = problems(registry, {"reward": {"labelling": "mach", "calibrator": "grade"},
                                "policy": {"tiny_arch": "qwen25vl"}})
    assert [p.split(":")[0] for p in found] == ["reward.labelling", "reward.calibrator", "policy.tiny_arch"]
    assert "Did you mean 'match'?" in found[0]


def test_config_validate_rejects_them_before_any_stage_runs(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({
        "reward": {"grading": {"rats": 1}},
        "policy": {"grpo": {"name": "grpo", "options": {"reward": [{"term": "answer_mtch"}]}}}}))
    proc = subprocess.run([sys.executable, "-m", "medgr2", "config", "validate", "bad.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2, err
    assert "2 problem(s)" in err and "grading.rats" in err and "answer_mtch" in err
    assert not (tmp_path / "runs").exists()


def test_a_folder_or_an_empty_file_as_config_gets_its_own_message(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "run.yaml").write_text("seed: 1\n")
    with pytest.raises(ConfigError, match="is a folder, not a config file .it holds run.yaml."):
        load_config(tmp_path / "configs")
    (tmp_path / "empty.yaml").write_text("# nothing yet\n\n")
    with pytest.warns(UserWarning, match="is empty: every setting takes its default"):
        assert load_config(tmp_path / "empty.yaml").seed == 0
