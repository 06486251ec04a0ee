"""Zero-shot the way OmniMedVQA measures it: the ``vqa`` evaluator's likelihood mode on a tiny untrained
VLM answers every question with a valid option and scores near chance (generation scores ~0)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medgr2.data import Prediction
from medgr2.interfaces import StageContext
from medgr2.stages.evaluate import evaluate
from medgr2.store import read_jsonl
from medgr2_eval.evaluator import pick_option

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def omni_samples(tmp_path_factory):
    from medgr2.plugins import load_registry
    from medgr2_datasets.fixtures import write_omnimedvqa_fixture

    root = write_omnimedvqa_fixture(tmp_path_factory.mktemp("omni"), n_per_dataset=10)
    return list(load_registry().create("dataset", "omnimedvqa", {"root": str(root)}).load().samples)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, omni_samples) -> Path:
    from medgr2_hf.tiny import build_tiny_vlm

    texts = [s.question + " " + " ".join(s.options) for s in omni_samples]
    return build_tiny_vlm("qwen2_5_vl", tmp_path_factory.mktemp("lik") / "qwen", seed=0, texts=texts)


def rotated(samples):
    """Every sample once per option, that option the truth: each question's classes perfectly balanced."""
    return [s.model_copy(update={"answer": o, "id": f"{s.id}-{i}"}) for s in samples
            for i, o in enumerate(s.options)]


def run(registry, tmp_path, model, samples, name, scorer="omnimedvqa", **options):
    ev = registry.create("evaluator", "vqa", {"bootstrap": 0, "batch_size": 16, **options})
    ctx = StageContext(work_dir=tmp_path / "work", registry=registry, answer_format="text")
    report = evaluate(ev, samples, model, tmp_path / name, ctx, scorer=scorer)
    return report, read_jsonl(tmp_path / name / "predictions.jsonl", Prediction)


def test_pick_option():
    assert pick_option([-3.0, -1.0, -2.0]) == 1
    assert pick_option([-1.0, -1.0]) == 0
    assert pick_option([float("nan"), -9.0]) == 1
    assert pick_option([float("-inf"), float("-inf")]) == 0


def test_likelihood_mode_is_valid_and_at_chance_on_a_balanced_set(tmp_path, registry, tiny_model,
                                                                   omni_samples):
    balanced = rotated(omni_samples)
    report, preds = run(registry, tmp_path, tiny_model, balanced, "lik", mode="likelihood")
    assert report.overall.n == len(balanced) and report.overall.invalid == 0
    assert report.meta["mode"] == "likelihood" and report.meta["likelihood_norm"] == "mean"
    for p in preds:
        assert p.model_answer in p.options and p.raw_answer.startswith("likelihood: ")
        assert p.option_scores is not None and len(p.option_scores) == len(p.options)
        assert p.options.index(p.model_answer) == pick_option(p.option_scores)
        assert all(x < 0 for x in p.option_scores)  # log-probabilities
    # the prompt never contains the truth, so each question gets one answer: right on exactly one rotation
    assert report.overall.correct == len(omni_samples)
    chance = sum(1 / len(s.options) for s in balanced) / len(balanced)
    assert report.overall.accuracy == pytest.approx(chance)
    assert report.overall.auroc is not None and 0.3 < report.overall.auroc < 0.7


def test_likelihood_near_chance_on_the_fixture_and_generation_is_not(tmp_path, registry, tiny_model,
                                                                     omni_samples):
    lik, _ = run(registry, tmp_path, tiny_model, omni_samples, "lik", mode="likelihood")
    chance = sum(1 / len(s.options) for s in omni_samples) / len(omni_samples)
    sd = (chance * (1 - chance) / len(omni_samples)) ** 0.5
    assert lik.overall.invalid == 0
    assert abs(lik.overall.accuracy - chance) < 3 * sd, (lik.overall.accuracy, chance)
    # generation read by exact match (the MedGR2 scorer): an untrained model writes no valid answer
    gen, _ = run(registry, tmp_path, tiny_model, omni_samples, "gen", scorer="medgr2", max_new_tokens=8)
    assert gen.meta["mode"] == "generate"
    assert gen.overall.invalid > len(omni_samples) // 2
    lik_exact, _ = run(registry, tmp_path, tiny_model, omni_samples, "lik2", scorer="medgr2",
                       mode="likelihood")
    assert lik_exact.overall.invalid == 0 and lik_exact.overall.correct == lik.overall.correct


def test_sum_scores_match_score_options_and_mean_divides_by_tokens(tmp_path, registry, tiny_model,
                                                                   omni_samples):
    from medgr2.images import open_image
    from medgr2_eval.evaluator import option_loglik, option_targets
    from medgr2_hf.vlm import load_vlm, score_options

    few = omni_samples[:6]
    _, summed = run(registry, tmp_path, tiny_model, few, "sum", mode="likelihood", likelihood_norm="sum")
    _, mean = run(registry, tmp_path, tiny_model, few, "mean", mode="likelihood")
    model, processor = load_vlm(tiny_model)
    ev = registry.create("evaluator", "vqa", {})
    for s, ps, pm in zip(few, summed, mean):
        image = open_image(s.images[0], registry)
        text, targets = ev.prompt(s, "text"), option_targets(s, "text")
        ref = score_options(model, processor, image, text, targets)
        assert ps.option_scores == pytest.approx(ref, abs=1e-4)
        counts = [n for _, n in option_loglik(model, processor, image, text, targets)]
        assert all(n >= 1 for n in counts)
        assert pm.option_scores == pytest.approx([x / n for x, n in zip(ref, counts)], abs=1e-4)


def test_likelihood_mode_has_its_own_resume_key(tmp_path, registry, tiny_model):
    ctx = StageContext(work_dir=tmp_path, registry=registry, answer_format="text")
    keys = {registry.create("evaluator", "vqa", o).cache_key(tiny_model, ctx)
            for o in ({}, {"mode": "likelihood"}, {"mode": "likelihood", "likelihood_norm": "sum"})}
    assert len(keys) == 3
