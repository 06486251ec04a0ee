"""The shared answer extraction (medgr2.answers.extract), table-driven over real-looking outputs."""

from __future__ import annotations

import pytest

from medgr2.answers import FORMATS, build_prompt, extract, is_correct, target_text
from medgr2.data import ImageRef, VQASample

TWO = ["normal", "pneumonia"]
FOUR = ["melanoma", "melanocytic nevi", "benign keratosis", "basal cell carcinoma"]
LUNG = ["lung", "lung cancer", "liver", "kidney"]
NORMAL = ["normal", "abnormal"]
MOD = ["CT", "MRI", "X-ray", "ultrasound"]

CASES = [
    # bare letters
    ("B", TWO, "B"),
    ("b", TWO, "B"),
    ("(B)", TWO, "B"),
    ("B)", TWO, "B"),
    ("B.", TWO, "B"),
    ("  B  \n", TWO, "B"),
    ("**B**", TWO, "B"),
    ("[A]", TWO, "A"),
    # cues
    ("Answer: B", TWO, "B"),
    ("answer: (A)", TWO, "A"),
    ("The answer is B.", TWO, "B"),
    ("The correct answer is C. benign keratosis", FOUR, "C"),
    ("Final answer: D", FOUR, "D"),
    ("The correct option is (B) melanocytic nevi.", FOUR, "B"),
    ("Option A is wrong because the lung is clear. The answer is B", TWO, "B"),
    ("I choose option D.", FOUR, "D"),
    # option text, with or without the letter (the `text` format)
    ("pneumonia (B)", TWO, "B"),
    ("normal (A)", TWO, "A"),
    ("pneumonia", TWO, "B"),
    ("Pneumonia.", TWO, "B"),
    ("The image shows pneumonia.", TWO, "B"),
    ("melanocytic nevi (B)", FOUR, "B"),
    ("B. melanocytic nevi", FOUR, "B"),
    ("Basal cell carcinoma", FOUR, "D"),
    ("This is an X-ray image.", MOD, "C"),
    ("x ray", MOD, "C"),
    ("lung cancer", LUNG, "B"),
    ("The organ is the lung.", LUNG, "A"),
    ("abnormal", NORMAL, "B"),
    ("Normal", NORMAL, "A"),
    # tags and boxed
    ("<think>The opacity suggests infection.</think><answer>pneumonia (B)</answer>", TWO, "B"),
    ("<think>Could be normal or pneumonia.</think><answer>A</answer>", TWO, "A"),
    ("<think>normal? pneumonia?</think>\n<answer> normal </answer>", TWO, "A"),
    ("<think>Lesion is pigmented</think><answer>melanoma</answer>", FOUR, "A"),
    ("The answer is \\boxed{B}.", TWO, "B"),
    ("$\\boxed{\\text{C}}$", FOUR, "C"),
    ("\\boxed{benign keratosis}", FOUR, "C"),
    ("<think>reasoning</think> pneumonia (B)", TWO, "B"),
    # never guess: ambiguous, contradictory, empty, out of range, off-topic
    ("", TWO, "invalid"),
    ("normal or pneumonia", TWO, "invalid"),
    ("It is not normal; it is pneumonia.", TWO, "invalid"),
    ("pneumonia (A)", TWO, "invalid"),
    ("A or B", TWO, "invalid"),
    ("A. normal\nB. pneumonia", TWO, "invalid"),
    ("E", FOUR, "invalid"),
    ("The answer is E.", FOUR, "invalid"),
    ("I cannot determine this from the image.", TWO, "invalid"),
    ("<think>The lungs look hazy and", TWO, "invalid"),
    ("<answer></answer>", TWO, "invalid"),
    ("ant grade\x1fRac keratkel", FOUR, "invalid"),
    ("A chest radiograph.", TWO, "invalid"),
    ("<answer>B or C</answer>", FOUR, "invalid"),
]


@pytest.mark.parametrize(("text", "options", "expected"), CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_extract_table(text, options, expected):
    assert extract(text, options) == expected


def test_table_is_large_enough():
    assert len(CASES) >= 40


def _sample(answer: str = "pneumonia", options=("normal", "pneumonia")) -> VQASample:
    return VQASample(images=(ImageRef(path="x.png", root="/r"),), question="What is shown?", options=options,
                     answer=answer, rationale="The lower lobe is opaque.")


@pytest.mark.parametrize("fmt", FORMATS)
def test_target_round_trips_through_extract(fmt):
    for answer in ("normal", "pneumonia"):
        sample = _sample(answer)
        target = target_text(sample, fmt)
        assert extract(target, sample.options) == sample.answer_letter
        assert is_correct(target, sample)
        prompt = build_prompt(sample, fmt)
        assert "A. normal" in prompt and "B. pneumonia" in prompt and sample.question in prompt


def test_formats_differ_and_bad_format_is_clear():
    sample = _sample()
    assert target_text(sample, "letter") == "B"
    assert target_text(sample, "text") == "pneumonia (B)"
    assert target_text(sample, "think").startswith("<think>The lower lobe is opaque.</think><answer>")
    with pytest.raises(ValueError, match="policy.answer_format"):
        build_prompt(sample, "json")


def test_train_modules_import_nothing_heavy():
    import subprocess
    import sys

    modules = "medgr2.answers, medgr2.stages.train, medgr2.cli.train, medgr2_trl.plugin, medgr2_trl.rewards, " \
              "medgr2_trl.options, medgr2_hf.plugin"
    code = (f"import sys, {modules}; "
            "print([m for m in ('torch', 'transformers', 'trl', 'datasets', 'peft') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_doctests_of_answers_and_reward_terms():
    import doctest

    import medgr2_trl.rewards

    import medgr2.answers

    for module in (medgr2.answers, medgr2_trl.rewards):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
