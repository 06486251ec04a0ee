"""The study commands: builders from files, and runners over (fake) registered components."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medgr2.cli import build_app
from medgr2.data import Modality, Prediction
from medgr2.store import write_jsonl
from medgr2.testing import make_sample


def invoke(*args):
    return CliRunner().invoke(build_app(list(args)), list(args))


def _preds(path, rights, modalities=("ct", "mri")):
    preds = [
        Prediction(
            question_id=str(i),
            question="q?",
            options=("a", "b"),
            gt_answer="a",
            model_answer="a" if r else "b",
            modality=modalities[i % len(modalities)],
        )
        for i, r in enumerate(rights)
    ]
    write_jsonl(path, preds)
    return path


def test_transfer_transitions_efficiency_commands(tmp_path):
    a = _preds(tmp_path / "a.jsonl", [True, False, True, True])
    b = _preds(tmp_path / "b.jsonl", [False, False, True, True])
    r = invoke("eval", "transfer", "--pred", f"ct={a}", "--pred", f"mri={b}", "--out", str(tmp_path / "t"))
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "t" / "transfer.json").read_text())["train_groups"] == ["ct", "mri"]
    assert (tmp_path / "t" / "transfer.png").is_file() and (tmp_path / "t" / "transfer.svg").is_file()

    r = invoke("eval", "transitions", "--before", str(a), "--after", str(b), "--out", str(tmp_path / "x"))
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "x" / "transitions.json").read_text())["overall"]["c->w"] == 1

    rows = [
        {"method": m, "size": k, "seed": s, "accuracy": 0.1 * k + 0.01 * s}
        for m in ("topk", "randk")
        for k in (1, 2)
        for s in (0, 1)
    ]
    write_jsonl(tmp_path / "res.jsonl", rows)
    r = invoke("eval", "efficiency", "--results", str(tmp_path / "res.jsonl"), "--out", str(tmp_path / "e"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e" / "efficiency.svg").is_file()

    r = invoke("eval", "transfer", "--pred", "no-equals-sign", "--out", str(tmp_path))
    assert r.exit_code == 2 and "TRAIN_GROUP=" in r.output


FAKES = [
    "--set",
    "policy.sft={name: fake}",
    "--set",
    "evaluation.evaluator={name: fake}",
    "--set",
    "reward.model={name: fake}",
    "--set",
    "generation.generator={name: fake}",
    "--set",
    "policy.grpo=null",
    "--set",
    "filters.steps=[]",
    "--set",
    "data.sources=[]",
]


def test_transfer_run_and_efficiency_run_with_fake_components(tmp_path):
    samples = [
        make_sample(f"Case {i}?", modality=[Modality.CT, Modality.MRI][i % 2], reward=float(i))
        for i in range(8)
    ]
    write_jsonl(tmp_path / "s.jsonl", samples)
    common = ["--model", str(tmp_path), "--eval", str(tmp_path / "s.jsonl")]
    r = invoke(
        "--plugin",
        "medgr2.testing",
        "eval",
        "transfer-run",
        *FAKES,
        "--train",
        str(tmp_path / "s.jsonl"),
        *common,
        "--out",
        str(tmp_path / "t"),
    )
    assert r.exit_code == 0, r.output
    table = json.loads((tmp_path / "t" / "transfer.json").read_text())
    assert table["train_groups"] == ["ct", "mri"] and len(table["accuracy"]) == 2

    r = invoke(
        "--plugin",
        "medgr2.testing",
        "eval",
        "efficiency-run",
        *FAKES,
        "--scored",
        str(tmp_path / "s.jsonl"),
        *common,
        "--size",
        "2",
        "--size",
        "4",
        "--seed",
        "0",
        "--seed",
        "1",
        "--out",
        str(tmp_path / "e"),
    )
    if "unknown filter 'top_k'" in r.output:  # filters plugin absent
        return
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "e" / "results.jsonl").read_text().splitlines()]
    assert {(x["method"], x["size"]) for x in rows} == {
        ("topk", 2),
        ("topk", 4),
        ("randk", 2),
        ("randk", 4),
        ("full", 8),
    }
    assert (tmp_path / "e" / "efficiency.png").is_file()
