"""The answer–rationale flags R_φ's head reads beside the encoder (medgr2_reward.consistency)."""

from __future__ import annotations

import pytest

from medgr2.data import RewardInput, VQASample
from medgr2_reward.consistency import FEATURES, consistency_features, options_of

Q = "Which finding does this chest X-ray show?\nA. pneumonia\nB. normal\nC. covid-19 pneumonia"


def test_options_are_read_back_from_the_lettered_lines_a_sample_writes():
    s = VQASample.model_validate({"images": [{"path": "x.png"}], "question": "Which?",
                                  "options": ["pneumonia", "normal"], "answer": "normal"})
    assert options_of(RewardInput.from_sample(s).question) == ["pneumonia", "normal"]
    assert options_of("Describe the findings.") == []


@pytest.mark.parametrize(("answer", "rationale", "flags"), [
    ("pneumonia", "The label of this image is pneumonia.", [1, 1, 1, 0]),
    # argues for another option, then concludes the answer: both named
    ("pneumonia", "The label of this image is normal. So the answer is pneumonia.", [1, 1, 1, 1]),
    ("normal", "The lungs show pneumonia.", [1, 1, 0, 1]),
    # an option containing the answer (or contained in it) is not "another option"
    ("covid-19 pneumonia", "Ground-glass opacities typical of covid-19 pneumonia.", [1, 1, 1, 0]),
    ("effusion", "A small effusion.", [1, 0, 1, 0]),
    # a word inside a longer word is not a mention
    ("pneumonia", "The PneumoniaMNIST label is unknown.", [1, 1, 0, 0]),
])
def test_flags(answer, rationale, flags):
    assert consistency_features(RewardInput(question=Q, answer=answer, rationale=rationale)) == [float(f) for f in flags]
    assert len(flags) == len(FEATURES)


def test_free_text_inputs_have_no_option_flags():
    assert consistency_features(RewardInput(question="Describe.", answer="Lungs clear.", rationale="")) == [0, 0, 0, 0]
