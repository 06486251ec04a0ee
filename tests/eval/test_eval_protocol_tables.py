"""Per-protocol tables: at least 40 answers each, with the verdict worked out by hand from the
source's own rules (the file and commit each scorer's docstring names), not by running medgr2.

Row: ``(model_answer, options, gt_answer, correct, valid, chosen index)``. The comment on a row
says which rule of the source decides it. The examples of issue 22 are rows here and are also
checked by name in ``test_issue_22_examples``.
"""

from __future__ import annotations

import pytest

from medgr2_eval.scorers import (
    SCORERS,
    Verdict,
    med_r1,
    medevalkit,
    medgr2,
    omnimedvqa,
    vlmevalkit,
    vlmevalkit_2024,
)

O3 = ("normal", "pneumonia", "pleural effusion")  # total option length 31: text matching up to 62 chars
GT = "pneumonia"  # letter B
O4 = ("Benign", "Malignant", "Normal", "Cyst")  # total length 25
ISSUE = ("Benign", "Malignant", "Normal")  # the issue's examples need a third option (C)
XR = ("CT", "X-ray", "MRI")
STAGES = ("Stage A", "Stage B", "Stage C")
YN = ("yes", "no")
DUP = ("yes", "no", "yes")  # a repeated option text
O5 = ("a1", "b1", "c1", "d1", "e1")

LONG = "After reviewing the chest film carefully the consolidation suggests pneumonia"  # 78 chars
EARLY_B = "B is likely because the right lower lobe shows consolidation"  # 60 chars, B first of 10 tokens

# ------------------------------------------------------------------------------ medgr2
# The authors' normalize_answer: lowercase, drop string.punctuation, trim the ends (inner
# whitespace kept); the answer must equal one option; correct when that option is the truth.
MEDGR2 = [
    ("pneumonia", O3, GT, True, True, 1),
    ("Pneumonia", O3, GT, True, True, 1),  # lowercased
    ("PNEUMONIA.", O3, GT, True, True, 1),  # punctuation dropped
    ("  pneumonia\n", O3, GT, True, True, 1),  # ends trimmed
    ("pneumonia!!!", O3, GT, True, True, 1),
    ("'pneumonia'", O3, GT, True, True, 1),  # quotes are punctuation
    ('"Pneumonia"', O3, GT, True, True, 1),
    ("(pneumonia)", O3, GT, True, True, 1),
    ("normal", O3, GT, False, True, 0),  # another option: valid, wrong
    ("Normal.", O3, GT, False, True, 0),
    ("pleural effusion", O3, GT, False, True, 2),
    ("pleural effusion.", O3, GT, False, True, 2),
    ("Pleural-Effusion", O3, GT, False, False, None),  # "pleuraleffusion": no option
    ("pleural  effusion", O3, GT, False, False, None),  # two inner spaces stay two
    ("pleural\teffusion", O3, GT, False, False, None),  # an inner tab stays
    ("B", O3, GT, False, False, None),  # a letter is no option text
    ("(B)", O3, GT, False, False, None),
    ("pneumonia (B)", O3, GT, False, False, None),  # extra text: no exact match
    ("The answer is pneumonia", O3, GT, False, False, None),
    ("pneumonia or normal", O3, GT, False, False, None),
    ("", O3, GT, False, False, None),
    ("   ", O3, GT, False, False, None),
    ("...", O3, GT, False, False, None),  # normalises to "", which is no option
    ("pneumonia。", O3, GT, False, False, None),  # a full-width stop is not ASCII punctuation
    ("x-ray", XR, "X-ray", True, True, 1),  # "xray" on both sides
    ("XRAY", XR, "X-ray", True, True, 1),
    ("x ray", XR, "X-ray", False, False, None),  # "x ray" != "xray"
    ("CT", XR, "X-ray", False, True, 0),
    ("ct scan", XR, "X-ray", False, False, None),
    ("Stage  C", STAGES, "Stage C", False, False, None),  # issue 22: two spaces are no option
    ("Stage C", STAGES, "Stage C", True, True, 2),
    ("stage c.", STAGES, "Stage C", True, True, 2),
    ("Stage A", STAGES, "Stage C", False, True, 0),
    ("Stage  C", ("Stage A", "Stage  C"), "Stage  C", True, True, 1),  # the same on both sides
    ("Stage C", ("Stage A", "Stage  C"), "Stage  C", False, False, None),
    ("pneumonia", O3, "B", True, True, 1),  # a bare letter names the truth
    ("pneumonia", O3, "Pneumonia.", True, True, 1),  # truth found by normalised text
    ("no", YN, "no", True, True, 1),
    ("Yes", YN, "no", False, True, 0),
    ("yes", DUP, "yes", True, True, 0),  # first equal option, and the truth is its first too
    ("Grade 2", ("Grade 1", "Grade 2", "Grade 3"), "Grade 2", True, True, 1),
    ("grade2", ("Grade 1", "Grade 2", "Grade 3"), "Grade 2", False, False, None),
    ("type ab", ("Type A/B", "Type C"), "Type C", False, True, 0),  # "/" dropped from the option
    ("pneumonia", (), GT, True, True, None),  # no options: compared with the truth
    ("Pneumonia.", (), GT, True, True, None),
    ("normal", (), GT, False, True, None),
    ("", (), GT, False, False, None),
    ("?!", (), "x", False, False, None),  # normalises to "": no answer
]

# ------------------------------------------------------------------------------ med-r1
# test_qwen2_5vl_vqa_nothink.py: when "answer" (case-sensitive) is in the output, the token of
# the first <answer>\s*(\w+)\s*</answer> is the answer (none: wrong); otherwise the whole output
# is. Exact equality with the truth's token (its own tag, else its option letter). Valid here:
# the token is an option letter in range.
MED_R1 = [
    ("<answer>B</answer>", O3, GT, True, True, 1),
    ("<answer> B </answer>", O3, GT, True, True, 1),
    ("<answer>\nB\n</answer>", O3, GT, True, True, 1),
    ("<answer>\tB\t</answer>", O3, GT, True, True, 1),
    ("<think>lobar opacity</think><answer>B</answer>", O3, GT, True, True, 1),
    ("<think>the answer might be A</think><answer>B</answer>", O3, GT, True, True, 1),
    ("<answer>A</answer>", O3, GT, False, True, 0),
    ("<answer>C</answer>", O3, GT, False, True, 2),
    ("<answer>D</answer>", O3, GT, False, False, None),  # no option D
    ("<answer>b</answer>", O3, GT, False, False, None),  # case-sensitive
    ("<answer>B.</answer>", O3, GT, False, False, None),  # \w+ must fill the tag
    ("<answer>(B)</answer>", O3, GT, False, False, None),
    ("<answer>B pneumonia</answer>", O3, GT, False, False, None),
    ("<answer>pneumonia</answer>", O3, GT, False, False, None),  # a token, but not the letter
    ("<answer></answer>", O3, GT, False, False, None),
    ("<answer>B</answer><answer>C</answer>", O3, GT, True, True, 1),  # the first tag counts
    ("<answer>C</answer> then <answer>B</answer>", O3, GT, False, True, 2),
    ("<answer>x</answer><answer>B</answer>", O3, GT, False, False, None),
    ("<answer>B", O3, GT, False, False, None),  # unclosed: no match
    ("<answer>B_</answer>", O3, GT, False, False, None),  # "_" is a word character
    ("<answer>1</answer>", O3, GT, False, False, None),
    ("The answer is B", O3, GT, False, False, None),  # "answer" without a tag
    ("answer: B", O3, GT, False, False, None),
    ("Answer: B", O3, GT, False, False, None),  # no lowercase "answer": compared whole
    ("<ANSWER>B</ANSWER>", O3, GT, False, False, None),  # likewise
    ("B", O3, GT, True, True, 1),  # compared whole
    ("B ", O3, GT, False, False, None),  # ... exactly
    (" B", O3, GT, False, False, None),
    ("B.", O3, GT, False, False, None),
    ("A", O3, GT, False, True, 0),
    ("C", O3, GT, False, True, 2),
    ("pneumonia", O3, GT, False, False, None),
    ("", O3, GT, False, False, None),
    ("<answer>B</answer>", O3, "<answer> B </answer>", True, True, 1),  # Med-R1's own truth
    ("<answer>C</answer>", O3, "<answer>C</answer>", True, True, 2),
    ("<answer>B</answer>", O3, "B", True, True, 1),
    ("<answer>B</answer>", O3, "Pneumonia.", True, True, 1),  # truth found by normalised text
    ("<answer>edema</answer>", O3, "edema", True, True, None),  # truth no option: its text
    ("<answer>D</answer>", O4, "Cyst", True, True, 3),
    ("<answer>D</answer>", O4, "<answer> D </answer>", True, True, 3),
    ("<answer>E</answer>", O4, "Cyst", False, False, None),
    ("<answer>yes</answer>", (), "yes", True, True, None),  # no options: any token is valid
    ("<answer>no</answer>", (), "yes", False, True, None),
    ("yes", (), "yes", True, True, None),
    ("<answer>yes", (), "yes", False, False, None),
]

# ------------------------------------------------------------------------------ omnimedvqa
# medicalqa.py: difflib.SequenceMatcher(None, option, output).ratio() per option; the first
# strictly highest ratio wins; a ratio of 0 everywhere chooses nothing (the script fails there).
OMNI = [
    ("pneumonia", O3, GT, True, True, 1),
    ("normal", O3, GT, False, True, 0),
    ("pleural effusion", O3, GT, False, True, 2),
    ("Pneumonia", O3, GT, True, True, 1),  # case-sensitive, still nearest
    ("The image shows pneumonia.", O3, GT, True, True, 1),
    ("pneumonia (B)", O3, GT, True, True, 1),
    ("pleural effusion is present", O3, GT, False, True, 2),
    ("normal chest", O3, GT, False, True, 0),
    ("effusion", O3, GT, False, True, 2),
    ("pneumon", O3, GT, True, True, 1),
    ("norm", O3, GT, False, True, 0),
    ("a", O3, GT, False, True, 0),  # 2/7 for "normal" beats 2/10 and 2/17
    ("A", O3, GT, False, False, None),  # no option holds an "A": ratio 0 everywhere
    ("B", O3, GT, False, False, None),
    ("zzzz", O3, GT, False, False, None),
    ("", O3, GT, False, False, None),
    ("pneumonia", (), GT, False, False, None),  # nothing to choose from
    ("ab", ("ab", "ab c"), "ab c", False, True, 0),  # identical wins
    ("ab c", ("ab", "ab c"), "ab c", True, True, 1),
    ("at", ("cat", "bat"), "bat", False, True, 0),  # tie 0.8 / 0.8: the first
    ("at", ("cat", "bat"), "cat", True, True, 0),
    ("yes", YN, "yes", True, True, 0),
    ("no", YN, "yes", False, True, 1),
    ("Yes", YN, "yes", True, True, 0),  # "es" still beats "no"'s nothing
    ("No", YN, "yes", False, True, 1),  # "o" shared with "no" only
    ("yes", DUP, "yes", True, True, 0),  # equal texts, equal ratios: the first
    ("CT", XR, "CT", True, True, 0),
    ("MRI", XR, "CT", False, True, 2),
    ("X-ray", XR, "X-ray", True, True, 1),
    ("xray", XR, "X-ray", True, True, 1),  # "ray" shared
    ("Benign", O4, "Benign", True, True, 0),
    ("Malignant", O4, "Benign", False, True, 1),
    ("Cyst", O4, "Cyst", True, True, 3),
    ("cyst", O4, "Cyst", True, True, 3),  # "yst"
    ("Normal", O4, "Cyst", False, True, 2),
    ("malignant tumour", O4, "Malignant", True, True, 1),
    ("Stage C", STAGES, "Stage C", True, True, 2),
    ("Stage  C", STAGES, "Stage C", True, True, 2),  # 12/15 beats the others' 10/15
    ("stage b", STAGES, "Stage B", False, True, 0),  # "b" != "B": three 10/14 ties, the first
    ("d1", O5, "d1", True, True, 3),
    ("e", O5, "e1", True, True, 4),  # only "e1" holds an "e"
]

# ------------------------------------------------------------------------------ medevalkit
# OmniMedVQA.py construct_messages + utils.py judge_multi_choice/parse_response/extract, with
# mathruler's extract_boxed_content. The truth is the letter of the last option equal to it.
MEDEVALKIT = [
    ("B", O3, GT, True, True, 1),
    ("b", O3, GT, True, True, 1),
    ("B.", O3, GT, True, True, 1),  # last paragraph cut at "."
    ("(B)", O3, GT, True, True, 1),  # fallback: only "b. pneumonia" shares a character
    ("A", O3, GT, False, True, 0),
    ("C", O3, GT, False, True, 2),
    ("D", O3, GT, False, True, 0),  # no "d" anywhere: fallback default A
    ("\\boxed{B}", O3, GT, True, True, 1),
    ("\\boxed{ B }", O3, GT, True, True, 1),  # box contents stripped
    ("\\boxed{}", O3, GT, False, True, 0),  # empty box: "" -> option A
    ("\\boxed{}", YN, "yes", True, True, 0),  # ... which is right when A is the truth
    ("\\boxed{pneumonia}", O3, GT, True, True, 1),
    ("\\boxed{\\text{B}}", O3, GT, True, True, 1),  # "\text{b}" goes to the fallback
    ("The answer is B.", O3, GT, True, True, 1),  # cut after "answer is"
    ("Answer: B", O3, GT, True, True, 1),
    ("**Answer**: B", O3, GT, True, True, 1),
    ("Final answer: C", O3, GT, False, True, 2),
    ("final answer is A", O3, GT, False, True, 0),
    ("The answer is: B", O3, GT, False, True, 0),  # " b" kept unstripped: fallback picks A
    ("<answer>B</answer>", O3, GT, True, True, 1),
    ("<think>A or C?</think><answer>B</answer>", O3, GT, True, True, 1),
    ("<answer>C</answer>", O3, GT, False, True, 2),
    ("<ANSWER>B</ANSWER>", O3, GT, True, True, 1),  # found again after lowercasing
    ("b\n\nbecause the lungs are opaque", O3, GT, True, True, 1),  # letter paragraph first
    ("Reasoning first.\n\nB. pneumonia", O3, GT, True, True, 1),  # letter starts the last one
    ("Reasoning.\n\nC", O3, GT, False, True, 2),
    ("The answer is B\n\nC", O3, GT, False, True, 2),  # the last paragraph's letter
    ("A\n\nThe answer is B", O3, GT, False, True, 0),  # the first paragraph's letter
    ("pneumonia", O3, GT, True, True, 1),  # fallback over "b. pneumonia" ...
    ("normal", O3, GT, False, True, 0),
    ("pleural effusion", O3, GT, False, True, 2),
    ("I see fluid around the lung: pleural effusion", O3, GT, False, True, 2),
    ("", O3, GT, False, True, 0),  # nothing similar: option A
    ("", YN, "yes", True, True, 0),
    ("答案: B", O3, GT, True, True, 1),
    ("Answer: B. Pneumonia is present", O3, GT, True, True, 1),
    ("answer: a. normal", O3, GT, False, True, 0),
    ("C", DUP, "yes", True, True, 2),  # issue 22: repeated text, the last letter is the truth
    ("A", DUP, "yes", False, True, 0),
    ("\\boxed{C}", DUP, "yes", True, True, 2),
    ("yes", DUP, "yes", False, True, 0),  # fallback tie "a. yes" / "c. yes": the first, wrong
    ("pneumonia", O3, "Pneumonia", True, True, None),  # truth equal to no option stays text
    ("B", O3, "Pneumonia", False, True, 1),
    ("B", O5, "e1", False, True, 1),  # only option_A..D exist: "e1" stays text
    ("e1", O5, "e1", True, True, None),
    ("E", O5, "e1", False, True, 0),  # "e" is no letter of four: fallback A
    ("B", (), GT, False, False, None),
]

# ------------------------------------------------------------------------------ vlmevalkit
# matching_util.py at e8e78f0, VERBOSE unset: one letter token among the last four tokens, else
# "(correct )answer is X" (any case, A-D), else one option text in an answer no longer than
# twice the options' total length; refusals and "Z" are non-answers.
VLMEVALKIT = [
    ("A lesion is visible, so the answer is C", ISSUE, "Normal", True, True, 2),  # issue 22
    ("C. Because of the findings.", ISSUE, "Normal", False, False, None),  # issue 22: C too early
    ("The answer is clearly Benign.", ISSUE, "Normal", True, True, 2),  # issue 22: C of "clearly"
    ("The answer is clearly Benign.", ISSUE, "Benign", False, True, 2),
    ("The answer is clearly Benign.", ("Benign", "Malignant"), "Benign", True, True, 0),  # no C: text
    ("B", O3, GT, True, True, 1),
    ("(B)", O3, GT, True, True, 1),
    ("B. pneumonia", O3, GT, True, True, 1),
    ("The answer is B.", O3, GT, True, True, 1),
    ("The answer is A.", O3, GT, False, True, 0),  # "A" is no article without VERBOSE
    ("A small opacity is seen; pneumonia", O3, GT, True, True, 1),  # A too early; the text
    ("I would say it is B", O3, GT, True, True, 1),
    ("B is my answer", O3, GT, True, True, 1),  # 4 tokens: index 0 is among the last four
    ("B is the right one", O3, GT, False, False, None),  # 5 tokens: index 0 is not
    (EARLY_B, O3, GT, False, False, None),
    ("The correct answer is **B**", O3, GT, True, True, 1),
    (
        "The correct answer is **B**. Here's why: the right lower lobe is consolidated and dense.",
        O3, GT, True, True, 1,
    ),  # B too early for the token rule; the "answer is" pattern reads it
    ("the answer is b", O3, GT, True, True, 1),  # pattern is case-insensitive
    ("The answer is D", O3, GT, False, False, None),  # D is no option
    ("A or B", O3, GT, False, False, None),  # two letters, no pattern, no text
    ("I think B, not C", O3, GT, False, False, None),
    ("Cannot determine the answer: pneumonia?", O3, GT, False, False, None),  # refusal -> Z
    ("Sorry, I can't help with images of people yet.", O3, GT, False, False, None),
    ("Z", O3, GT, False, False, None),
    ("None of these, Z", O3, GT, False, False, None),
    ("pneumonia", O3, GT, True, True, 1),
    ("Pleural Effusion", O3, GT, False, True, 2),
    ("normal or pneumonia", O3, GT, False, False, None),
    ("no idea", O3, GT, False, False, None),
    ("D", O3, GT, False, False, None),
    (LONG, O3, GT, False, False, None),  # 78 > 62 characters: no text matching
    ("Failed to obtain answer via API", O3, GT, False, False, None),
    ("Failed to obtain answer via API: normal", O3, GT, False, True, 0),  # no letter; text still
    ("[B]", O3, GT, True, True, 1),
    ("{C}", O3, GT, False, True, 2),
    ("B!", O3, GT, True, True, 1),
    ("#B", O3, GT, True, True, 1),
    ("B/C", O3, GT, False, False, None),  # "/" is not a separator
    ("", O3, GT, False, False, None),
    ("B", (), GT, False, False, None),
    ("answer is Cyst", O4, "Cyst", False, True, 2),  # the pattern reads the C of "Cyst"
    ("The answer is Malignant", O4, "Malignant", True, True, 1),  # M is no A-D: text
    ("The answer is benign", O4, "Malignant", True, True, 1),  # the b of "benign" reads B
    ("Benign", O4, "Benign", True, True, 0),
    ("A", O4, "Benign", True, True, 0),
    ("A and B", O4, "Benign", False, False, None),
    ("E", O5, "e1", True, True, 4),
    ("The answer is E", O5, "e1", True, True, 4),  # token rule (the pattern stops at D)
]

# ------------------------------------------------------------------------------ vlmevalkit-2024
# matching_util.py at c6bdffd with VERBOSE=1: one letter token anywhere (no letter when "A" is a
# token of a 4+-token answer), refusals/"Z" non-answers, else one option text, any length.
VLMEVALKIT_2024 = [
    ("B", O3, GT, True, True, 1),
    ("(B) pneumonia", O3, GT, True, True, 1),
    ("The answer is B.", O3, GT, True, True, 1),
    ("A.", O3, GT, False, True, 0),
    ("Answer: A", O3, GT, False, True, 0),
    ("The answer is A.", O3, GT, False, False, None),  # "A" may be the article: no letter
    ("A lesion with consolidation suggests pneumonia", O3, GT, True, True, 1),  # then the text
    ("I pick (A) normal here", O3, GT, False, True, 0),
    ("Cannot determine the answer: pneumonia?", O3, GT, False, False, None),
    ("Sorry, I can't help with images of people yet.", O3, GT, False, False, None),
    ("Z", O3, GT, False, False, None),
    ("None of these, Z", O3, GT, False, False, None),
    ("A or B", O3, GT, False, False, None),
    ("pneumonia", O3, GT, True, True, 1),
    ("Pleural Effusion", O3, GT, False, True, 2),
    ("normal or pneumonia", O3, GT, False, False, None),
    ("no idea", O3, GT, False, False, None),
    ("D", O3, GT, False, False, None),
    ("B", (), GT, False, False, None),
    ("A lesion is visible, so the answer is C", ISSUE, "Normal", False, False, None),  # A and C
    ("C. Because of the findings.", ISSUE, "Normal", True, True, 2),  # the letter anywhere
    ("The answer is clearly Benign.", ISSUE, "Benign", True, True, 0),  # no pattern: text
    (LONG, O3, GT, True, True, 1),  # text matching at any length
    (EARLY_B, O3, GT, True, True, 1),
    ("B is the right one", O3, GT, True, True, 1),
    ("I would say it is B", O3, GT, True, True, 1),
    ("the answer is b", O3, GT, False, False, None),  # no pattern rule
    ("The correct answer is **B**. Here's why: the lobe is consolidated.", O3, GT, True, True, 1),
    ("Failed to obtain answer via API", O3, GT, False, False, None),
    ("Failed to obtain answer via API: Z, normal", O3, GT, False, True, 0),  # no letter, no Z; text
    ("[B]", O3, GT, True, True, 1),
    ("{C}", O3, GT, False, True, 2),
    ("B/C", O3, GT, False, False, None),
    ("I think B, not C", O3, GT, False, False, None),
    ("", O3, GT, False, False, None),
    ("E", O5, "e1", True, True, 4),
    ("Benign", O4, "Benign", True, True, 0),
    ("The answer is Malignant", O4, "Malignant", True, True, 1),
    ("The answer is benign", O4, "Benign", True, True, 0),  # text, not the "b"
    ("A", O4, "Benign", True, True, 0),
    ("A cyst", O4, "Cyst", False, True, 0),  # 2 tokens: "A" is a letter
    ("A benign cyst is seen", O4, "Cyst", False, False, None),  # article; then two texts
    ("It is a cyst", O4, "Cyst", True, True, 3),  # "a" is not a letter token
]

TABLES = {
    "medgr2": (medgr2, MEDGR2),
    "med-r1": (med_r1, MED_R1),
    "omnimedvqa": (omnimedvqa, OMNI),
    "medevalkit": (medevalkit, MEDEVALKIT),
    "vlmevalkit": (vlmevalkit, VLMEVALKIT),
    "vlmevalkit-2024": (vlmevalkit_2024, VLMEVALKIT_2024),
}

CASES = [
    pytest.param(name, *row, id=f"{name}-{i}")
    for name, (_, rows) in TABLES.items()
    for i, row in enumerate(rows)
]


@pytest.mark.parametrize("name,answer,options,gt,correct,valid,index", CASES)
def test_protocol_table(name, answer, options, gt, correct, valid, index):
    v = TABLES[name][0](answer, options, gt)
    assert isinstance(v, Verdict)
    assert (v.correct, v.valid, v.index) == (correct, valid, index), v
    assert not v.correct or v.valid
    if v.index is not None:
        assert v.chosen == options[v.index]


def test_every_protocol_has_a_table_of_at_least_40_rows():
    assert set(TABLES) == set(SCORERS)
    for name, (_, rows) in TABLES.items():
        assert len(rows) >= 40, (name, len(rows))
        assert len({(r[0], r[1], r[2]) for r in rows}) == len(rows), f"{name}: a row is repeated"


def test_issue_22_examples():
    assert vlmevalkit("A lesion is visible, so the answer is C", ISSUE, "Normal").index == 2
    assert not vlmevalkit("C. Because of the findings.", ISSUE, "Normal").valid
    assert vlmevalkit("The answer is clearly Benign.", ISSUE, "Benign").chosen == "Normal"
    assert medevalkit("C", DUP, "yes").correct and not medevalkit("A", DUP, "yes").correct
    assert medevalkit("\\boxed{}", YN, "yes").index == 0
    assert not medgr2("Stage  C", STAGES, "Stage C").valid
