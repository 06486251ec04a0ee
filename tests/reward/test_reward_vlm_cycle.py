"""The VLM R_φ through a whole cycle on a tiny Qwen2.5-VL built offline: reward-init on text-only report
grades → score image samples → reward-update on image samples plus text-only replay (issue 18)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
tiny = pytest.importorskip("medgr2_hf.tiny")

from medgr2_reward.grade_set import build_grade_set
from medgr2_reward.model import VLMRewardModel
from medgr2_reward.options import VLMRewardOptions

from medgr2.data import GradedExample, ImageRef, RewardInput
from medgr2.interfaces import SeedSet
from medgr2.stages.reward import init_reward_model, score_samples, update_reward_model
from medgr2.testing import make_context, make_registry, make_sample

REPORTS = (
    "The heart size is normal. The lungs are clear.",
    "Mild cardiomegaly with a small left pleural effusion.",
    "Right lower lobe consolidation consistent with pneumonia.",
    "No acute cardiopulmonary abnormality.",
    "Degenerative changes of the thoracic spine.",
    "Healed fracture of the left sixth rib.",
    "Patchy opacity in the left upper lobe.",
    "Stable calcified granuloma in the right apex.",
)
DIAGNOSES = ("normal", "pneumonia", "tumour", "fracture")
OPTIONS = {"max_steps": 6, "batch_size": 6, "head_lr": 1e-2, "threads": 1, "score_batch_size": 4, "seed": 0}


@pytest.fixture(scope="module")
def vlm_folder(tmp_path_factory) -> Path:
    return tiny.build_tiny_vlm("qwen2_5_vl", tmp_path_factory.mktemp("vlm") / "qwen", seed=0)


def _reports(tmp_path: Path) -> Path:
    path = tmp_path / "reports.txt"
    path.write_text("\n".join(REPORTS) + "\n", encoding="utf-8")
    return path


def _images(tmp_path: Path, n: int = 4) -> list[ImageRef]:
    from PIL import Image

    refs = []
    for i in range(n):
        shade = 20 + 60 * i
        Image.new("RGB", (64, 64), (shade, 255 - shade, shade)).save(tmp_path / f"img{i}.png")
        refs.append(ImageRef(path=f"img{i}.png", root=str(tmp_path), sha256=f"{i + 1:064x}"))
    return refs


def _samples(refs: list[ImageRef], n: int = 8):
    return [make_sample(image=refs[i % len(refs)], answer=DIAGNOSES[i % 4], subject_id=f"p{i}",
                        rationale=f"The image suggests {DIAGNOSES[i % 4]}.") for i in range(n)]


def _image_examples(samples) -> list[GradedExample]:
    """Each sample's right answer (10) and a wrong one (−6): labelled image examples, as `match` gives."""
    out = []
    for s in samples:
        wrong = next(o for o in s.options if o != s.answer)
        for answer, target in ((s.answer, 10.0), (wrong, -6.0)):
            out.append(GradedExample(**RewardInput.from_sample(s, answer).model_dump(), target=target, grade=0,
                                     group_id=s.subject_id, origin="match"))
    return out


def _mixed(samples, text_examples) -> list[RewardInput]:
    """Image inputs and text-only inputs interleaved, of different lengths."""
    images = [RewardInput.from_sample(s) for s in samples[:5]]
    texts = [RewardInput(question=e.question, answer=e.answer, rationale=e.rationale) for e in text_examples[:5]]
    return [x for pair in zip(images, texts) for x in pair]


def _assert_invariant(rm: VLMRewardModel, inputs: list[RewardInput]) -> list[float]:
    """Scores do not depend on batch size or order; each input scores as it does alone or among its own kind."""
    rm.options = rm.options.model_copy(update={"score_batch_size": 4})
    scores = rm.score(inputs)
    assert all(-6.0 <= s <= 10.0 for s in scores)
    for bs in (1, 3, 16):
        rm.options = rm.options.model_copy(update={"score_batch_size": bs})
        assert list(reversed(rm.score(list(reversed(inputs))))) == pytest.approx(scores, abs=1e-5)
    for has_image in (True, False):
        idx = [i for i, x in enumerate(inputs) if (x.image is not None) is has_image]
        assert rm.score([inputs[i] for i in idx]) == pytest.approx([scores[i] for i in idx], abs=1e-5)
    return scores


def test_vlm_reward_init_on_report_grades_score_images_then_update_on_mixed_batches(vlm_folder, tmp_path):
    train, held = build_grade_set(references=[{"format": "text", "path": str(_reports(tmp_path))}],
                                  options={"grades": [1, 3, 4], "held_out_fraction": 0.25}, seed=0)
    assert train and held and all(e.image is None for e in [*train, *held])  # report grades: no images
    rm = VLMRewardModel(VLMRewardOptions(model_path=str(vlm_folder), **OPTIONS))
    context = make_context(tmp_path / "rm")

    # reward-init: text-only report grades only
    v0 = rm.train(train, context, eval_examples=held)
    assert v0.version.startswith("vlm-v001-") and v0.metrics["steps"] == OPTIONS["max_steps"]
    assert (Path(v0.checkpoint) / "calibration.json").is_file()

    # score: image samples, the version in every breakdown
    samples = _samples(_images(tmp_path))
    scored = score_samples(rm, samples, context)
    assert all(-6.0 <= s.reward.total <= 10.0 and s.reward.model_version == v0.version for s in scored)
    assert len({round(s.reward.total, 6) for s in scored}) > 1  # the image and text change the score
    mixed = _mixed(samples, train)
    before = _assert_invariant(rm, mixed)

    # reward-update: image examples plus text-only replay; batches mix both kinds
    images = _image_examples(samples)
    v1 = rm.train([*images, *train[:6]], context, eval_examples=held)
    assert v1.version.startswith("vlm-v002-") and v1.version != v0.version and rm.version == v1.version
    assert rm.parent_version == v0.version and v1.metrics["train_examples"] == len(images) + 6
    after = _assert_invariant(rm, mixed)
    assert after != pytest.approx(before, abs=1e-4)  # the retrain changed the scores

    # a reload of v002 scores the mixed batch the same
    again = VLMRewardModel(VLMRewardOptions(model_path=str(vlm_folder), checkpoint=v1.checkpoint, **OPTIONS))
    assert again.version == v1.version
    assert again.score(mixed) == pytest.approx(after, abs=1e-5)


def test_vlm_backbone_refuses_a_mixed_processor_batch(vlm_folder, tmp_path):
    rm = VLMRewardModel(VLMRewardOptions(model_path=str(vlm_folder), threads=1))
    rm._ensure_built()
    inputs = [RewardInput(image=_images(tmp_path, 1)[0], question="q", answer="a"), RewardInput(question="q", answer="a")]
    with pytest.raises(ValueError, match="split it by has-image"):
        rm._backbone.collate(rm._prepare(inputs), "cpu")
    assert len(rm.score(inputs)) == 2  # the model itself splits such a batch


def test_vlm_through_the_reward_stages(vlm_folder, tmp_path):
    """reward-init and reward-update as the loop runs them (medgr2.stages.reward), with `match` labelling."""
    from medgr2.config import RunConfig

    config = RunConfig.model_validate({
        "reward": {
            "model": {"name": "vlm", "options": {"model_path": str(vlm_folder), **OPTIONS}},
            "grade_set": {"name": "four-grade", "options": {
                "references": [{"format": "text", "path": str(_reports(tmp_path))}],
                "grading": {"grades": [1, 3, 4], "held_out_fraction": 0.25}}},
            "labelling": "match", "min_retrain_examples": 8, "replay_fraction": 0.5, "promotion_tolerance": 1.0},
        "evaluation": {"evaluator": {"name": "fake", "options": {"accuracy": 0.5}}},
    })
    registry = make_registry("medgr2_reward.plugin")
    init_ctx = make_context(tmp_path / "reward-init", registry)
    v0 = init_reward_model(config, SeedSet(), init_ctx, samples=[])
    assert v0.version.startswith("vlm-v001-")

    from medgr2.store import read_jsonl

    history = read_jsonl(init_ctx.work_dir / "grades-train.jsonl", GradedExample)
    held = read_jsonl(init_ctx.work_dir / "grades-heldout.jsonl", GradedExample)
    assert history and all(e.image is None for e in history)
    rm = registry.create("reward_model", "vlm", {"model_path": str(vlm_folder), **OPTIONS,
                                                  "checkpoint": v0.checkpoint})
    assert rm.version == v0.version
    samples = _samples(_images(tmp_path))
    scored = score_samples(rm, samples, make_context(tmp_path / "score", registry))
    assert all(-6.0 <= s.reward.total <= 10.0 and s.reward.model_version == v0.version for s in scored)

    update_ctx = make_context(tmp_path / "reward-update", registry, cycle=1)
    outcome = update_reward_model(config, rm, Path(v0.checkpoint), tmp_path / "policy", samples, history, held,
                                  update_ctx)
    assert outcome.labelled == len(samples) and outcome.replay > 0
    assert all(e.image is not None for e in read_jsonl(update_ctx.work_dir / "labelled.jsonl", GradedExample))
    assert outcome.promoted and outcome.version != v0.version and outcome.version == rm.version
    _assert_invariant(rm, _mixed(samples, history))
