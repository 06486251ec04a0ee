"""Table-driven tests of every scorer, built from each protocol's published rule."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from medgr2_eval.parsing import gt_index, normalize, parse_options
from medgr2_eval.scorers import (
    SCORERS,
    Verdict,
    med_r1,
    medevalkit,
    medgr2,
    omnimedvqa,
    source_rule,
    vlmevalkit,
    vlmevalkit_2024,
)

OPTS = ("normal", "pneumonia", "pleural effusion")
GT = "pneumonia"

# (model_answer, options, gt, correct, valid, chosen index)
MEDGR2_TABLE = [
    ("pneumonia", OPTS, GT, True, True, 1),  # exact
    ("Pneumonia.", OPTS, GT, True, True, 1),  # lowercase + punctuation stripped
    ("  PNEUMONIA!  ", OPTS, GT, True, True, 1),  # whitespace stripped
    ("pleural   effusion", OPTS, GT, False, False, None),  # inner whitespace kept: no option (authors)
    ("pleural effusion", OPTS, GT, False, True, 2),  # another option: valid but wrong
    ("Normal", OPTS, GT, False, True, 0),  # another option: wrong, valid
    ("B", OPTS, GT, False, False, None),  # a letter matches no option text: invalid
    ("pneumonia (B)", OPTS, GT, False, False, None),  # extra text: no exact match -> invalid
    ("I think pneumonia", OPTS, GT, False, False, None),  # not exact
    ("", OPTS, GT, False, False, None),  # empty: invalid
    ("x-ray", ("CT", "X-ray", "MRI"), "X-ray", True, True, 1),  # hyphen removed on both sides
    ("xray", ("CT", "X-ray", "MRI"), "X-ray", True, True, 1),
    ("pneumonia", (), GT, True, True, None),  # no options: compared with gt only
    ("normal", (), GT, False, True, None),
]

MED_R1_TABLE = [
    ("<think>consolidation</think><answer>B</answer>", OPTS, GT, True, True, 1),  # gt text -> letter B
    ("<answer> B </answer>", OPTS, GT, True, True, 1),  # \s* around the token
    ("<answer>\nB\n</answer>", OPTS, GT, True, True, 1),
    ("<answer>A</answer>", OPTS, GT, False, True, 0),  # wrong letter
    ("<answer>b</answer>", OPTS, GT, False, False, None),  # case-sensitive: names no option letter
    ("<answer>B.</answer>", OPTS, GT, False, False, None),  # \w+ must fill the tag
    ("<answer>pleural effusion</answer>", OPTS, GT, False, False, None),  # two words: no match
    ("<answer>B</answer><answer>C</answer>", OPTS, GT, True, True, 1),  # the first tag counts
    ("the answer is B", OPTS, GT, False, False, None),  # mentions "answer" without a tag: wrong
    ("B", OPTS, GT, True, True, 1),  # no "answer" at all: the whole output is compared
    ("B.", OPTS, GT, False, False, None),  # ... exactly
    ("Answer: B", OPTS, GT, False, False, None),  # "Answer" is not "answer": compared whole
    ("<answer>B</answer>", OPTS, "<answer> B </answer>", True, True, 1),  # gt with its own tag
    ("<answer>C</answer>", OPTS, "<answer>B</answer>", False, True, 2),
    ("<answer>yes</answer>", (), "yes", True, True, None),  # no options: token vs gt
    ("", OPTS, GT, False, False, None),
]

OMNI_TABLE = [
    ("pneumonia", OPTS, GT, True, True, 1),  # identical: ratio 1
    ("The image shows pneumonia.", OPTS, GT, True, True, 1),  # most similar by ratio
    ("pleural effusion is present", OPTS, GT, False, True, 2),
    ("normal chest", OPTS, GT, False, True, 0),
    ("Pneumonia", OPTS, GT, True, True, 1),  # case-sensitive, still closest
    ("", OPTS, GT, False, False, None),  # nothing chosen
    ("zzzz", ("ab", "cd"), "cd", False, False, None),  # zero similarity to every option
    ("ab", ("ab", "ab c"), "ab c", False, True, 0),  # exact beats longer
    ("pneumonia", (), GT, False, False, None),  # no options: cannot choose
]

MEDEVALKIT_TABLE = [
    ("B", OPTS, GT, True, True, 1),  # bare letter
    ("b\n\nbecause the lungs ...", OPTS, GT, True, True, 1),  # letter paragraph first
    ("Reasoning first.\n\nB. pneumonia", OPTS, GT, True, True, 1),  # letter in last paragraph
    ("\\boxed{B}", OPTS, GT, True, True, 1),  # boxed wins
    ("\\boxed{pneumonia}", OPTS, GT, True, True, 1),
    ("<think>looks like A</think><answer>C</answer>", OPTS, GT, False, True, 2),  # answer tag
    ("The answer is pneumonia", OPTS, GT, True, True, 1),  # cut after "answer is"
    ("answer: B", OPTS, GT, True, True, 1),  # cut after "answer:"
    ("Final answer: normal.", OPTS, GT, False, True, 0),
    ("pneumonia", OPTS, GT, True, True, 1),  # equals the gt text
    ("I see fluid around the lung: pleural effusion", OPTS, GT, False, True, 2),  # after last ':'
    ("there is consolidation, probably pneumonic", OPTS, GT, True, True, 1),  # difflib fallback
    ("", OPTS, GT, False, True, 0),  # fallback defaults to option A
    ("", ("yes", "no"), "yes", True, True, 0),  # ... which MedEvalKit scores right
    ("\\boxed{}", ("yes", "no"), "yes", True, True, 0),  # an empty box is "": option A too
    ("C", ("yes", "no", "yes"), "yes", True, True, 2),  # repeated text: the last letter is the truth
    ("A", ("yes", "no", "yes"), "yes", False, True, 0),
    ("B", (), GT, False, False, None),
]

VLMEVALKIT_2024_TABLE = [
    ("B", OPTS, GT, True, True, 1),  # unique letter token
    ("(B) pneumonia", OPTS, GT, True, True, 1),
    ("The answer is B.", OPTS, GT, True, True, 1),
    ("A.", OPTS, GT, False, True, 0),  # decorated A is a letter
    ("Answer: A", OPTS, GT, False, True, 0),
    ("A lesion with consolidation suggests pneumonia", OPTS, GT, True, True, 1),  # article A, then text
    ("The answer is A.", OPTS, GT, False, False, None),  # "A" in > 3 tokens: no letter inferred
    ("I pick (A) normal here", OPTS, GT, False, True, 0),  # ... the option text still decides
    ("Cannot determine the answer: pneumonia?", OPTS, GT, False, False, None),  # refusal -> Z, no text
    ("Z", OPTS, GT, False, False, None),  # VLMEvalKit's non-answer
    ("A or B", OPTS, GT, False, False, None),  # two letters: ambiguous
    ("pneumonia", OPTS, GT, True, True, 1),  # unique option text
    ("Pleural Effusion", OPTS, GT, False, True, 2),  # text match is case-insensitive
    ("normal or pneumonia", OPTS, GT, False, False, None),  # two texts: ambiguous
    ("no idea", OPTS, GT, False, False, None),  # nothing: invalid
    ("D", OPTS, GT, False, False, None),  # letter outside the options
    ("B", (), GT, False, False, None),
]

VLMEVALKIT_TABLE = [  # current VLMEvalKit (more cases in test_eval_protocol_tables.py)
    ("B", OPTS, GT, True, True, 1),
    ("(B) pneumonia", OPTS, GT, True, True, 1),
    ("The answer is A.", OPTS, GT, False, True, 0),  # "A" is no article without VERBOSE
    ("A lesion with consolidation suggests pneumonia", OPTS, GT, True, True, 1),  # A too early; text
    ("Cannot determine the answer: pneumonia?", OPTS, GT, False, False, None),
    ("pneumonia", OPTS, GT, True, True, 1),
    ("B", (), GT, False, False, None),
]

TABLES = {
    "medgr2": (medgr2, MEDGR2_TABLE),
    "med-r1": (med_r1, MED_R1_TABLE),
    "omnimedvqa": (omnimedvqa, OMNI_TABLE),
    "medevalkit": (medevalkit, MEDEVALKIT_TABLE),
    "vlmevalkit-2024": (vlmevalkit_2024, VLMEVALKIT_2024_TABLE),
    "vlmevalkit": (vlmevalkit, VLMEVALKIT_TABLE),
}

CASES = [
    pytest.param(name, *row, id=f"{name}-{i}")
    for name, (_, rows) in TABLES.items()
    for i, row in enumerate(rows)
]


@pytest.mark.parametrize("name,answer,options,gt,correct,valid,index", CASES)
def test_scorer_table(name, answer, options, gt, correct, valid, index):
    fn = TABLES[name][0]
    v = fn(answer, options, gt)
    assert isinstance(v, Verdict)
    assert (v.correct, v.valid, v.index) == (correct, valid, index), v
    assert not v.correct or v.valid  # correct implies valid
    if v.index is not None:
        assert v.chosen == options[v.index]


def test_every_builtin_scorer_has_a_table_and_a_source(registry):
    assert set(TABLES) == set(SCORERS) == set(registry.names("scorer"))
    for name in SCORERS:
        assert "source:" in source_rule(registry.get("scorer", name))


def test_protocols_disagree_on_the_same_answers():
    """The point of naming the scorer: one answer set, different accuracies."""
    answers = ["pneumonia", "Pneumonia (B)", "B", "I think it is pneumonia", "<answer>B</answer>"]
    acc = {n: sum(f(a, OPTS, GT).correct for a in answers) for n, f in SCORERS.items()}
    assert len(set(acc.values())) >= 3, acc


@pytest.mark.parametrize(
    "question,expected",
    [
        (
            "What is shown? Please choose one of the following: CT or MRI or X-ray. You must pick only one answer.",
            ("CT", "MRI", "X-ray"),
        ),
        ("Please choose one of the following: normal or pneumonia.", ("normal", "pneumonia")),
        ("Choose one of the following: grade 1, grade 2, or grade 3", ("grade 1, grade 2", "grade 3")),
        ("Which organ?\nA. liver\nB. spleen\nC. kidney", ("liver", "spleen", "kidney")),
        ("Which organ? (A) liver (B) spleen (C) kidney", ("liver", "spleen", "kidney")),
        ("Which organ?\nA) liver\nB) left kidney\nAnswer with the letter.", ("liver", "left kidney")),
        ("Options: A: benign B: malignant", ("benign", "malignant")),
        ("What modality is used? A)MRI, B)CT scan, C)X-ray", ("MRI", "CT scan", "X-ray")),  # Med-R1
        ("Is this a normal scan?", ()),
        ("Grade A. Is it?", ()),  # a lone marker is not a list
    ],
)
def test_parse_options(question, expected):
    assert parse_options(question) == expected


@pytest.mark.parametrize(
    "options,gt,index",
    [
        (OPTS, "pneumonia", 1),
        (OPTS, "Pneumonia.", 1),
        (OPTS, "B", 1),
        (OPTS, "(c)", 2),
        (OPTS, "D", None),
        (OPTS, "edema", None),
    ],
)
def test_gt_index(options, gt, index):
    assert gt_index(options, gt) == index


def test_normalize():
    """The authors' normalize_answer: lowercase, no punctuation, ends trimmed, inner spaces kept."""
    assert normalize(" Pleural Effusion. ") == "pleural effusion"
    assert normalize("Stage  C") == "stage  c"


class _Judge(BaseHTTPRequestHandler):
    prompts: ClassVar[list[str]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Judge.prompts.append(body["messages"][0]["content"])
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "C"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_vlmevalkit_judge_only_when_configured(registry):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        plain = registry.create("scorer", "vlmevalkit")
        assert not plain("fluid around the lung", OPTS, "pleural effusion").valid
        judged = registry.create(
            "scorer", "vlmevalkit", {"judge_base_url": f"http://127.0.0.1:{server.server_port}/v1"}
        )
        v = judged("fluid around the lung", OPTS, "pleural effusion")
        assert (v.correct, v.valid, v.index) == (True, True, 2)
        assert "fluid around the lung" in _Judge.prompts[-1] and "C. pleural effusion" in _Judge.prompts[-1]
        n = len(_Judge.prompts)
        assert judged("B", OPTS, GT).correct and len(_Judge.prompts) == n  # rules first: no judge call
    finally:
        server.shutdown()
