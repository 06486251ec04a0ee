"""``medgr2 data inspect`` and ``medgr2 data export``."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medgr2.cli import build_app
from medgr2.cli.data_cmd import parse_opts
from medgr2_datasets.fixtures import write_omnimedvqa_fixture


def run(*args):
    result = CliRunner().invoke(build_app(list(args)), list(args))
    return result


def test_parse_opts_nests_and_parses_yaml():
    assert parse_opts(["root=/x", "columns.diagnosis=dx", "seed=3", "flag=true"]) == {
        "root": "/x",
        "columns": {"diagnosis": "dx"},
        "seed": 3,
        "flag": True,
    }


def test_inspect_json(tmp_path):
    root = write_omnimedvqa_fixture(tmp_path, n_per_dataset=5)
    r = run("data", "inspect", "--source", "omnimedvqa", "--opt", f"root={root}", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout[r.stdout.index("{") :])
    # 30 questions over 30 images; the 24 train images are also seed items for generation
    assert data["samples"] == 30 and data["items"] == 24
    assert data["total"] == 24 and sum(data["by_modality"].values()) == 24
    assert set(data["by_question_type"]) == {
        "modality_recognition",
        "anatomy_identification",
        "disease_diagnosis",
        "lesion_grading",
        "other_biological_attributes",
    }
    r = run("data", "inspect", "--source", "demo", "--generator", "labels", "--gen-opt", "per_item=2")
    assert r.exit_code == 0 and "by modality" in r.output


def test_inspect_errors_are_clear(tmp_path):
    r = run("data", "inspect", "--source", "omnimedvqa", "--opt", f"root={tmp_path}")
    assert r.exit_code == 2 and "QA_information" in r.output
    r = run("data", "inspect", "--source", "omnimedvqq")
    assert r.exit_code == 2 and "omnimedvqa" in r.output
    r = run("data", "inspect", "--source", "demo", "--opt", "bogus=1")
    assert r.exit_code == 2 and "bogus" in r.output


def test_export_then_inspect(tmp_path):
    out = tmp_path / "export"
    r = run(
        "data",
        "export",
        "--source",
        "demo",
        "--generator",
        "labels",
        "--split",
        "test",
        "--format",
        "omnimedvqa",
        str(out),
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout[r.stdout.index("{") :])
    assert report["samples"] > 0 and report["rejects"] == 0
    assert (out / "QA_information" / "Open-access" / "demo.json").is_file()
    r = run("data", "inspect", "--source", "omnimedvqa", "--opt", f"root={out}", "--json")
    data = json.loads(r.stdout[r.stdout.index("{") :])
    assert data["total"] == report["samples"] and data["by_split"] == {"test": report["samples"]}
    r = run("data", "export", "--source", "demo", "--format", "csv", str(out))
    assert r.exit_code == 2 and "omnimedvqa" in r.output
