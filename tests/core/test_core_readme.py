"""The README's three paths (own data, a GPU with a Hub model, an API key) run as written, at toy scale:
each ``<!-- readme: NAME -->`` block is executed with bash, minus the lines that train (``# trains``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medgr2.testing.fake_servers import FakeGeminiServer

REPO = Path(__file__).resolve().parents[2]


def block(name: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- readme: {name} -->\s*```bash\n(.*?)```", text, re.DOTALL)
    assert match, f"README.md has no block marked {name!r}"
    return "\n".join(ln for ln in match.group(1).splitlines() if not ln.rstrip().endswith("# trains"))


def bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MEDGR2_")}
    environ.update(env)
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture
def my_images(tmp_path: Path) -> Path:
    from PIL import Image

    root = tmp_path / "images"
    for cls in ("benign", "malignant"):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            Image.new("L", (40, 40), 30 + 10 * i + (100 if cls == "malignant" else 0)).save(root / cls / f"{i}.png")
    return root


def test_the_three_readme_paths(tmp_path, my_images):
    work = tmp_path / "work"
    work.mkdir()
    own = bash(block("own-data"), work, MY_IMAGES=str(my_images))
    assert own.returncode == 0, own.stderr[-3000:]
    assert "my.yaml: OK" in own.stdout
    probe = [json.loads(x) for x in (work / "runs" / "my-data-probe" / "samples.jsonl").read_text().splitlines()]
    assert len(probe) == 8 and all(s["modality"] == "ultrasound" for s in probe)

    gpu = bash(block("gpu"), work)
    assert gpu.returncode == 0, gpu.stderr[-3000:]
    assert "policy:\n  model: Qwen/Qwen2.5-VL-3B-Instruct" in (work / "my.yaml").read_text()

    with FakeGeminiServer() as server:
        api = bash(block("api"), work, GEMINI_API_KEY="test-key",
                   MEDGR2_EXTRA_SETS=f"--set generation.generator.options.base_url={server.base_url}")
        assert api.returncode == 0, api.stderr[-3000:]
        assert server.attempts == 4
    made = [json.loads(x) for x in (work / "runs" / "gemini-probe" / "samples.jsonl").read_text().splitlines()]
    assert len(made) == 4 and {s["provenance"]["generator"] for s in made} == {"gemini"}
    assert {s["provenance"]["prompt_strategy"] for s in made} == {"meta_cognitive"}
