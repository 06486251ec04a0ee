"""`medgr2 eval score` / `medgr2 eval scorers` on files written in the MedGR2 authors' format."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medgr2.cli import build_app

Q = "What is shown? Please choose one of the following: {}. You must pick only one answer."
ROWS = [  # (options, gt, model answer, modality, dataset) in the authors' format: texts, no options key
    (("CT", "MRI", "X-ray"), "X-ray", "x-ray", "xray", "Chest"),  # correct after normalisation
    (("normal", "pneumonia"), "pneumonia", "Normal", "xray", "Chest"),  # wrong
    (("benign", "malignant"), "benign", "I cannot tell", "ultrasound", "BUSI"),  # invalid under medgr2
    (("benign", "malignant"), "malignant", "Malignant.", "ultrasound", "BUSI"),  # correct
]


def _write(tmp_path):
    path = tmp_path / "preds.jsonl"
    with path.open("w") as f:
        for opts, gt, ans, mod, ds in ROWS:
            f.write(
                json.dumps(
                    {
                        "question": Q.format(" or ".join(opts)),
                        "gt_answer": gt,
                        "model_answer": ans,
                        "modality": mod,
                        "dataset": ds,
                        "image": "x.png",
                    }
                )
                + "\n"
            )
    return path


def invoke(*args):
    result = CliRunner().invoke(build_app(list(args)), list(args))
    return result


def test_eval_score_json_on_authors_format(tmp_path):
    path = _write(tmp_path)
    r = invoke(
        "eval",
        "score",
        "--predictions",
        str(path),
        "--scorer",
        "medgr2",
        "--json",
        "--out",
        str(tmp_path / "o"),
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout[r.stdout.index("{") :])
    assert (data["n"], data["invalid"], data["accuracy"]) == (4, 1, 0.5)
    assert abs(data["accuracy_valid_only"] - 2 / 3) < 1e-5
    assert data["by_modality"]["ultrasound"]["invalid"] == 1 and data["by_dataset"]["Chest"]["correct"] == 1
    assert (tmp_path / "o" / "report.json").is_file() and "By modality" in (
        tmp_path / "o" / "report.md"
    ).read_text()


def test_eval_score_other_protocol_changes_the_number(tmp_path):
    path = _write(tmp_path)
    r = invoke("eval", "score", "--predictions", str(path), "--scorer", "omnimedvqa", "--json")
    data = json.loads(r.stdout[r.stdout.index("{") :])
    assert data["scorer"] == "omnimedvqa" and data["invalid"] == 0


def test_eval_score_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "model_answer": "a"}\n')
    r = invoke("eval", "score", "--predictions", str(bad))
    assert r.exit_code == 2 and "missing key(s) gt_answer" in r.output and "bad.jsonl:1" in r.output
    r = invoke("eval", "score", "--predictions", str(_write(tmp_path)), "--scorer", "medgr")
    assert r.exit_code == 2 and "Did you mean" in r.output
    r = invoke("eval", "score", "--predictions", str(tmp_path / "none.jsonl"))
    assert r.exit_code == 2 and "does not exist" in r.output


def test_eval_scorers_lists_sources():
    r = invoke("eval", "scorers", "--json")
    rows = json.loads(r.stdout[r.stdout.index("[") :])
    assert {x["name"] for x in rows} >= {"medgr2", "med-r1", "omnimedvqa", "medevalkit", "vlmevalkit"}
    assert all("source:" in x["rule"] for x in rows)


def test_eval_score_warns_about_missing_options_and_foreign_gt(tmp_path):
    path = tmp_path / "w.jsonl"
    path.write_text(
        '{"question": "no options here", "gt_answer": "x", "model_answer": "x"}\n'
        '{"question": "q? Please choose one of the following: a or b.", "gt_answer": "c", "model_answer": "a"}\n'
    )
    r = invoke("eval", "score", "--predictions", str(path), "--json")
    assert r.exit_code == 0
    assert "1 prediction(s) have no options" in r.stderr and "none of their options" in r.stderr
    meta = json.loads(r.stdout[r.stdout.index("{") :])["meta"]
    assert (meta["n_without_options"], meta["n_gt_not_an_option"]) == (1, 1)


def test_eval_protocols_scores_under_every_scorer(tmp_path):
    r = invoke("eval", "protocols", "--predictions", str(_write(tmp_path)), "--json", "--bootstrap", "0")
    assert r.exit_code == 0, r.output
    rows = {x["scorer"]: x for x in json.loads(r.stdout[r.stdout.index("[") :])}
    assert set(rows) >= {"medgr2", "med-r1", "omnimedvqa", "medevalkit", "vlmevalkit"}
    assert rows["medgr2"]["invalid"] == 1 and rows["omnimedvqa"]["invalid"] == 0
    assert rows["medgr2"]["accuracy"] == 0.5
