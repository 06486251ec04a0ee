"""`medgr2 eval score --per-item FILE`: each item's extracted answer and verdict, as JSONL."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medgr2.cli import build_app

Q = "What is shown? Please choose one of the following: {}. You must pick only one answer."
ROWS = [  # (options, gt, model answer)
    (("CT", "MRI", "X-ray"), "X-ray", "x-ray"),
    (("normal", "pneumonia"), "pneumonia", "Normal"),
    (("benign", "malignant"), "benign", "I cannot tell"),
    (("Stage A", "Stage B", "Stage C"), "Stage C", "Stage  C"),
    (("yes", "no", "yes"), "yes", "C"),
]


def _write(tmp_path):
    path = tmp_path / "preds.jsonl"
    lines = [
        json.dumps({"question": Q.format(" or ".join(o)), "gt_answer": gt, "model_answer": a, "qid": f"q{i}"})
        for i, (o, gt, a) in enumerate(ROWS)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _score(path, scorer, per_item):
    args = ["eval", "score", "--predictions", str(path), "--scorer", scorer, "--json", "--bootstrap", "0"]
    args += ["--per-item", str(per_item)]
    return CliRunner().invoke(build_app(args), args)


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_per_item_writes_extracted_answer_and_verdict(tmp_path):
    preds = _write(tmp_path)
    out = tmp_path / "deep" / "medgr2.jsonl"  # parent folders are created
    r = _score(preds, "medgr2", out)
    assert r.exit_code == 0, r.output
    items = _read(out)
    assert [i["item"] for i in items] == [0, 1, 2, 3, 4]
    assert [i["question_id"] for i in items] == ["q0", "q1", "q2", "q3", "q4"]
    assert {i["scorer"] for i in items} == {"medgr2"}
    first = items[0]
    assert (first["extracted"], first["letter"], first["chosen"]) == ("xray", "C", "X-ray")
    assert first["gt_letter"] == "C"
    assert first["valid"] and first["correct"] and first["model_answer"] == "x-ray"
    assert (items[1]["letter"], items[1]["valid"], items[1]["correct"]) == ("A", True, False)
    assert (items[2]["extracted"], items[2]["letter"], items[2]["valid"]) == ("i cannot tell", None, False)
    assert (items[3]["extracted"], items[3]["valid"]) == ("stage  c", False)  # authors' whitespace
    # the per-item verdicts add up to the report's figures
    summary = json.loads(r.stdout[r.stdout.index("{") :])
    assert summary["invalid"] == sum(not i["valid"] for i in items)
    assert summary["correct"] == sum(i["correct"] for i in items) == 1


def test_per_item_files_of_two_protocols_line_up_for_a_diff(tmp_path):
    preds = _write(tmp_path)
    a, b = tmp_path / "medgr2.jsonl", tmp_path / "medevalkit.jsonl"
    assert _score(preds, "medgr2", a).exit_code == 0
    assert _score(preds, "medevalkit", b).exit_code == 0
    pairs = zip(_read(a), _read(b))
    differ = [x["item"] for x, y in pairs if (x["valid"], x["correct"]) != (y["valid"], y["correct"])]
    assert differ == [2, 3, 4]  # medevalkit never leaves an answer invalid; "C" names the last "yes"
    m = _read(b)
    assert (m[4]["gt_letter"], m[4]["extracted"], m[4]["letter"], m[4]["correct"]) == ("A", "c", "C", True)


def test_per_item_folder_path_is_a_clear_error(tmp_path):
    r = _score(_write(tmp_path), "medgr2", tmp_path)
    assert r.exit_code == 2 and "is a folder" in r.output and "items.jsonl" in r.output
