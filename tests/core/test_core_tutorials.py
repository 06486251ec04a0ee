"""The three tutorials of docs/tutorials.md run as written: each example file is a working plugin."""

from __future__ import annotations

import doctest
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medgr2.config import ConfigError, load_config
from medgr2.plugins import load_registry
from medgr2.testing import fake_config_data

REPO = Path(__file__).resolve().parents[2]
TUTORIALS = REPO / "examples" / "tutorials"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDGR2_")}
    return subprocess.run([sys.executable, "-m", "medgr2", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180, check=False)


def test_reward_term_tutorial():
    spec = importlib.util.spec_from_file_location("reward_term_tutorial", TUTORIALS / "reward_term.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert doctest.testmod(module).failed == 0
    registry = load_registry([str(TUTORIALS / "reward_term.py")], strict=True)
    term = registry.create("reward_term", "concise", {"max_words": 2})
    assert term(["pneumonia (B)", "it is pneumonia (B)", "a b c d e f"]) == [1.0, 0.0, 0.0]
    assert registry.create("reward_term", "concise")(["x " * 30]) == [0.5]  # the options' default: 20 words
    data = fake_config_data()
    data["policy"]["grpo"] = {"name": "fake", "options": {}}
    reward = [{"term": "concise", "weight": 0.1, "options": {"max_words": 12}}]
    good = {"policy": {"grpo": {"name": "grpo", "options": {"reward": reward}}}}
    assert load_config(data=good, registry=registry).policy.grpo.options["reward"] == reward
    bad = {"policy": {"grpo": {"name": "grpo", "options": {"reward": [
        {"term": "concise", "options": {"max_wrds": 12}}]}}}}
    with pytest.raises(ConfigError, match="max_wrds: unknown option. Did you mean 'max_words'"):
        load_config(data=bad, registry=registry)


def _manifest(tmp_path: Path) -> Path:
    from PIL import Image

    rows = []
    for i in range(12):
        name = f"img/{i}.png"
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.new("RGB", (32, 32), (i * 20, 40, 90)).save(tmp_path / name)
        rows.append({"image": name, "diagnosis": ["pneumonia", "normal", "effusion"][i % 3], "patient": f"p{i // 2}",
                     "modality": "xray"})
    rows.append({"image": "img/missing.png", "diagnosis": "normal"})
    lines = [json.dumps(r) for r in rows] + ["{broken"]
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "manifest.jsonl"


def test_dataset_source_and_generator_backend_tutorials(tmp_path):
    manifest = _manifest(tmp_path)
    plugins = ["--plugin", str(TUTORIALS / "dataset_source.py"), "--plugin", str(TUTORIALS / "generator_backend.py")]
    source = f"data.sources=[{{name: manifest, options: {{path: {manifest}, test_share: 0.3}}}}]"
    inspect = cli(*plugins, "data", "inspect", "--source", "manifest", "--opt", f"path={manifest}",
                  "--opt", "test_share=0.3", "--json", cwd=tmp_path)
    assert inspect.returncode == 0, inspect.stderr[-2000:]
    summary = json.loads(inspect.stdout)
    assert summary["items"] == 12 and summary["rejects_by_reason"] == {"missing_file": 1, "bad_record": 1}
    assert set(summary["by_split"]) == {"train", "test"}

    gen = cli(*plugins, "generate", "--set", source, "--set", "generation.generator.name=yes_no", "--limit", "6",
              "--out", str(tmp_path / "gen"), "--json", cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr[-2000:]
    samples = [json.loads(line) for line in (tmp_path / "gen" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and {s["answer"] for s in samples} <= {"yes", "no"}
    assert all(s["split"] == "train" and s["provenance"]["generator"] == "yes_no" for s in samples)
