"""The ``vqa`` evaluator end to end: a tiny VLM on an OmniMedVQA-layout fixture."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medgr2.data import EvalReport, Prediction
from medgr2.interfaces import Evaluator, StageContext
from medgr2.stages.evaluate import evaluate
from medgr2.store import read_jsonl
from medgr2_eval.evaluator import medgr2_prompt, read_answer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from medgr2_hf.tiny import build_tiny_vlm

    return build_tiny_vlm("qwen2_5_vl", tmp_path_factory.mktemp("eval-tiny") / "qwen", seed=0)


@pytest.fixture(scope="module")
def omni_root(tmp_path_factory) -> Path:
    from medgr2_datasets.fixtures import write_omnimedvqa_fixture

    return write_omnimedvqa_fixture(tmp_path_factory.mktemp("omni"), n_per_dataset=4)


@pytest.fixture(scope="module")
def omni_samples(omni_root):
    from medgr2.plugins import load_registry

    seed = load_registry().create("dataset", "omnimedvqa", {"root": str(omni_root)}).load()
    assert len(seed.samples) == 24
    return list(seed.samples)


@pytest.mark.parametrize(
    "raw,fmt,expected",
    [
        ("pneumonia (B)", "text", "pneumonia"),
        ("pneumonia (B).", "text", "pneumonia"),
        ("pneumonia", "text", "pneumonia"),
        ("<think>the lobe is opaque</think><answer>pneumonia (B)</answer>", "think", "pneumonia"),
        ("<think>unfinished thought", "think", ""),
        ("<answer>B</answer>", "letter", "B"),
        ("B", "letter", "B"),
        ("grade (2) lesion", "text", "grade (2) lesion"),  # a marker must be a letter at the very end
    ],
)
def test_read_answer(raw, fmt, expected):
    assert read_answer(raw, fmt) == expected


def test_medgr2_prompt_round_trips_through_option_parsing(omni_samples):
    from medgr2_eval.parsing import parse_options

    s = omni_samples[0]
    assert parse_options(medgr2_prompt(s)) == s.options


def test_vqa_evaluator_end_to_end_on_omnimedvqa_fixture(tmp_path, tiny_model, omni_samples, registry):
    ev = registry.create("evaluator", "vqa", {"option_scores": True, "batch_size": 8, "bootstrap": 200})
    assert isinstance(ev, Evaluator)
    ctx = StageContext(work_dir=tmp_path / "work", registry=registry, answer_format="text")
    out = tmp_path / "eval"
    report = evaluate(ev, omni_samples, tiny_model, out, ctx, scorer="omnimedvqa")

    preds = read_jsonl(out / "predictions.jsonl", Prediction)
    assert [p.question_id for p in preds] == [s.id for s in omni_samples]
    for p, s in zip(preds, omni_samples):
        assert (p.question, p.options, p.gt_answer, p.modality, p.question_type) == (
            s.question,
            s.options,
            s.answer,
            s.modality.value,
            s.question_type.value,
        )
        assert (
            p.raw_answer is not None
            and p.option_scores is not None
            and len(p.option_scores) == len(s.options)
        )
        assert p.dataset == s.provenance.source_dataset

    assert report.scorer == "omnimedvqa" and report.overall.n == len(omni_samples)
    assert set(report.by_modality) == {s.modality.value for s in omni_samples}
    assert set(report.by_question_type) == {s.question_type.value for s in omni_samples}
    assert report.overall.auroc is not None  # real option scores
    assert report.meta["answer_format"] == "text" and not report.meta["stopped_early"]
    assert EvalReport.model_validate_json((out / "report.json").read_text()) == report
    md = (out / "report.md").read_text()
    assert "## By modality" in md and "## By question type" in md
    for modality in report.by_modality:
        assert f"| {modality} |" in md

    # rescoring the written predictions under the same scorer gives the same numbers
    from medgr2_eval.prediction_files import score_predictions

    again = score_predictions(preds, "omnimedvqa", bootstrap=200)
    assert again.overall == report.overall


def test_evaluator_stops_early_without_predictions(tmp_path, tiny_model, omni_samples, registry):
    ev = registry.create("evaluator", "vqa", {})
    ctx = StageContext(work_dir=tmp_path, registry=registry)
    ctx.stop.set()
    with pytest.raises(RuntimeError, match="no predictions"):
        ev.evaluate(omni_samples[:2], tiny_model, tmp_path / "o", ctx)
    ctx.scorer = "medgr"
    with pytest.raises(KeyError, match="Did you mean 'medgr2'"):  # before any generation
        ev.evaluate(omni_samples[:2], tiny_model, tmp_path / "o", ctx)


def test_eval_run_cli_on_a_source(tmp_path, tiny_model, omni_root):
    from typer.testing import CliRunner

    from medgr2.cli import build_app

    args = [
        "eval",
        "run",
        "--model",
        str(tiny_model),
        "--source",
        "omnimedvqa",
        "--opt",
        f"root={omni_root}",
        "--split",
        "all",
        "--out",
        str(tmp_path / "o"),
        "--scorer",
        "medgr2",
        "--limit",
        "6",
        "--json",
    ]
    r = CliRunner().invoke(build_app(args), args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout[r.stdout.index("{") :])
    assert data["scorer"] == "medgr2" and data["n"] == 6
    assert len((tmp_path / "o" / "predictions.jsonl").read_text().splitlines()) == 6
    from medgr2.data import VQASample
    from medgr2.plugins import load_registry
    from medgr2.store import write_jsonl

    samples = load_registry().create("dataset", "omnimedvqa", {"root": str(omni_root)}).load().samples[:2]
    write_jsonl(tmp_path / "s.jsonl", samples)
    args = [
        "eval",
        "run",
        "--model",
        str(tiny_model),
        "--samples",
        str(tmp_path / "s.jsonl"),
        "--out",
        str(tmp_path / "o2"),
        "--json",
    ]
    r = CliRunner().invoke(build_app(args), args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout[r.stdout.index("{") :])["n"] == 2
    assert read_jsonl(tmp_path / "s.jsonl", VQASample) == list(samples)
    bad = ["eval", "run", "--model", str(tmp_path / "nope"), "--samples", "x.jsonl", "--out", str(tmp_path)]
    r = CliRunner().invoke(build_app(bad), bad)
    assert r.exit_code == 2 and "does not exist" in r.output


@pytest.mark.data
def test_vqa_evaluator_on_real_shared_images(tmp_path, tiny_model, shared_data, registry):
    """Real BUSI ultrasound PNGs through the labels builder, evaluated under two scorers."""
    seed = registry.create(
        "dataset", "shared", {"preset": "busi", "root": str(shared_data), "overrides": {"limit": 12}}
    ).load()
    ctx = StageContext(work_dir=tmp_path / "w", registry=registry, seed=0)
    samples = list(registry.create("generator", "labels", {"seed": 0}).generate(seed.items, ctx).samples)[:10]
    assert samples, "the labels builder made no questions from BUSI"
    ev = registry.create("evaluator", "vqa", {"batch_size": 5, "bootstrap": 0, "prompt": "medgr2"})
    report = evaluate(ev, samples, tiny_model, tmp_path / "o", ctx, scorer="vlmevalkit")
    assert report.overall.n == len(samples) and "ultrasound" in report.by_modality
    assert report.meta["prompt"] == "medgr2"
    preds = read_jsonl(tmp_path / "o" / "predictions.jsonl", Prediction)
    assert all(
        "Please choose one of the following" not in p.question for p in preds
    )  # the sample's own question


def test_protocol_prompts_keep_the_raw_output(tmp_path, tiny_model, omni_samples, registry):
    from medgr2_eval.evaluator import med_r1_prompt

    s = omni_samples[0]
    assert "A) " in med_r1_prompt(s) and "<answer>...</answer>" in med_r1_prompt(s)
    ev = registry.create("evaluator", "vqa", {"prompt": "med-r1", "bootstrap": 0, "max_new_tokens": 8})
    report = evaluate(
        ev,
        omni_samples[:3],
        tiny_model,
        tmp_path,
        StageContext(work_dir=tmp_path, registry=registry),
        scorer="med-r1",
    )
    preds = read_jsonl(tmp_path / "predictions.jsonl", Prediction)
    assert all(p.model_answer == p.raw_answer for p in preds) and report.meta["prompt"] == "med-r1"


def test_evaluation_resumes_from_partial_predictions(tmp_path, tiny_model, omni_samples, registry):
    from medgr2.store import write_jsonl

    samples = omni_samples[:4]
    ev = registry.create("evaluator", "vqa", {"bootstrap": 0, "max_new_tokens": 4})
    ctx = StageContext(work_dir=tmp_path, registry=registry)
    out = tmp_path / "o"
    out.mkdir()
    s0 = samples[0]
    done = Prediction(
        question_id=s0.id,
        question=s0.question,
        options=s0.options,
        gt_answer=s0.answer,
        model_answer=s0.answer,
        raw_answer="FROM AN EARLIER RUN",
    )
    write_jsonl(out / "predictions.partial.jsonl", [done])
    (out / "predictions.partial.key").write_text(ev.cache_key(tiny_model, ctx))
    ev.evaluate(samples, tiny_model, out, ctx)
    preds = read_jsonl(out / "predictions.jsonl", Prediction)
    assert preds[0].raw_answer == "FROM AN EARLIER RUN" and len(preds) == 4
    assert not (out / "predictions.partial.jsonl").exists()  # complete: cache removed

    write_jsonl(out / "predictions.partial.jsonl", [done])
    (out / "predictions.partial.key").write_text("stale")  # another model/settings: not reused
    ev.evaluate(samples, tiny_model, out, ctx)
    assert read_jsonl(out / "predictions.jsonl", Prediction)[0].raw_answer != "FROM AN EARLIER RUN"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ev.evaluate(samples, tmp_path / "missing", out, ctx)


def test_option_targets_follow_the_prompt(omni_samples):
    from medgr2_eval.evaluator import option_targets

    s = omni_samples[1]
    assert option_targets(s, "text", "medgr2") == list(s.options)
    assert option_targets(s, "text", "med-r1")[1] == "<answer>B</answer>"
    assert option_targets(s, "text")[0] == f"{s.options[0]} (A)"
    assert option_targets(s, "letter") == ["A", "B", "C", "D"][: len(s.options)]
