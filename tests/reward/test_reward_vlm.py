"""The VLM reward model on tiny Qwen2.5-VL and LLaVA folders built offline."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
tiny = pytest.importorskip("medgr2_hf.tiny")

from medgr2_reward.model import VLMRewardModel
from medgr2_reward.options import VLMRewardOptions

from medgr2.data import GradedExample, ImageRef, RewardInput
from medgr2.interfaces import StageContext


def _images(tmp_path):
    from PIL import Image

    refs = []
    for i, shade in enumerate((30, 220)):
        Image.new("RGB", (64, 64), (shade, shade, shade)).save(tmp_path / f"{i}.png")
        refs.append(ImageRef(path=f"{i}.png", root=str(tmp_path), sha256=f"{i:064x}"))
    return refs


def _examples(refs):
    answers = [("normal", 10.0), ("pneumonia", -6.0), ("a long answer with several words", 2.0)]
    return [GradedExample(image=refs[i % 2], question="What does the X-ray show?", answer=answers[i % 3][0],
                          target=answers[i % 3][1], grade=0, group_id=f"g{i}") for i in range(12)]


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "llava"])
def test_vlm_reward_model_trains_saves_loads_and_is_batch_invariant(arch, tmp_path):
    folder = tiny.build_tiny_vlm(arch, tmp_path / "vlm", seed=0)
    refs = _images(tmp_path)
    ex = _examples(refs)
    opts = VLMRewardOptions(model_path=str(folder), max_steps=25, batch_size=6, head_lr=1e-2, threads=1)
    rm = VLMRewardModel(opts)
    mse = lambda s: sum((a - e.target) ** 2 for a, e in zip(s, ex)) / len(ex)
    before = mse(rm.score(ex))
    result = rm.train(ex, StageContext(work_dir=tmp_path / "work"), eval_examples=ex[:6])
    scores = rm.score(ex)
    assert mse(scores) < before and all(-6 <= s <= 10 for s in scores)
    saved = json.loads((tmp_path / "work" / "versions" / "v001" / "reward_model.json").read_text())
    assert saved["backbone"] == str(folder)  # frozen backbone: only the head is saved
    assert result.version.startswith("vlm-v001-")
    again = VLMRewardModel(opts.model_copy(update={"checkpoint": result.checkpoint}))
    assert again.version == rm.version
    assert again.score(ex) == pytest.approx(scores, abs=1e-5)
    for bs in (1, 5):
        rm.options = rm.options.model_copy(update={"score_batch_size": bs})
        rev = rm.score(list(reversed(ex)))
        assert list(reversed(rev)) == pytest.approx(scores, abs=1e-5)


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "llava"])
def test_vlm_scores_a_batch_mixing_inputs_with_and_without_images(arch, tmp_path):
    """Text-only inputs run through the VLM without an image part, in their own sub-batch: each input
    scores as it does alone, whatever the batch size and order."""
    folder = tiny.build_tiny_vlm(arch, tmp_path / "vlm", seed=0)
    rm = VLMRewardModel(VLMRewardOptions(model_path=str(folder), threads=1, score_batch_size=3))
    refs = _images(tmp_path)
    mixed = [RewardInput(image=refs[i % 2] if i % 3 else None, question="What does the X-ray show?",
                         answer="normal " * (1 + i)) for i in range(7)]
    scores = rm.score(mixed)
    assert [rm.score([x])[0] for x in mixed] == pytest.approx(scores, abs=1e-5)
    assert list(reversed(rm.score(list(reversed(mixed))))) == pytest.approx(scores, abs=1e-5)
    assert scores[0] != pytest.approx(rm.score([mixed[0].model_copy(update={"image": refs[0]})])[0], abs=1e-6)
