"""The miniature Table 2 / Figure 2 script (examples/experiments/table2_cpu/run.py): its configs,
conditions and the statistics over seeds, on synthetic per-item results (no training)."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

from medgr2.config import RunConfig, load_config

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "experiments" / "table2_cpu" / "run.py"


@pytest.fixture(scope="module")
def t2():
    spec = importlib.util.spec_from_file_location("table2_run", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["table2_run"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_conditions_and_parents(t2):
    names = t2.condition_names([25, 50], 50)
    assert names == ["sft-raw", "sft-randk25", "sft-topk25", "sft-randk50", "sft-topk50", "sft-topk50+grpo"]
    assert t2.parse_condition("sft-topk25+grpo") == ("topk", 25, True)
    assert t2.parse_condition("sft-raw") == ("raw", None, False)
    assert [t2.parent_of(n) for n in names] == [None, "sft-raw", "sft-raw", "sft-raw", "sft-raw", "sft-topk50"]
    for bad in ("sft-topk", "sft-raw25", "topk25", "sft-topk0", "sft-topk150"):
        with pytest.raises(ValueError, match="unknown condition"):
            t2.parse_condition(bad)


def test_cli_defaults_and_smoke_preset(t2):
    args = t2.parse_args([])
    assert (args.seeds, args.ks, args.grpo_k, args.split) == ([0, 1, 2], [25, 50], 50, "test")
    assert args.generate_for == ["zero-shot", "sft-raw"] and args.threads == 2
    smoke = t2.parse_args(["--smoke"])
    assert all(getattr(smoke, k) == v for k, v in t2.SMOKE.items())
    assert smoke.max_items < args.max_items and smoke.sft_steps < args.sft_steps
    assert t2.parse_args(["--grpo-k", "-1"]).grpo_k is None


def test_cli_rejects_bad_input(t2, capsys):
    with pytest.raises(SystemExit):
        t2.parse_args(["--defects", "{not json"])
    assert "--defects must be a JSON object" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        t2.parse_args(["--grpo-k", "30"])
    assert "--grpo-k 30 is not one of --ks" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        t2.parse_args(["--conditions", "sft-top25"])
    assert "unknown condition" in capsys.readouterr().err


def test_grading_and_grpo_options_reach_the_configs(t2, capsys):
    args = t2.parse_args(["--rm-grading", '{"answer_only_share": 0}', "--grpo-options", '{"temperature": 1.2}'])
    assert t2.base_config(args, 0)["reward"]["grade_set"]["options"]["grading"] == {"answer_only_share": 0}
    spec = t2.grpo_spec(args)
    assert spec["options"]["temperature"] == 1.2 and spec["options"]["max_steps"] == args.grpo_steps
    with pytest.raises(SystemExit):
        t2.parse_args(["--grpo-options", "[1]"])
    assert "--grpo-options must be a JSON object" in capsys.readouterr().err


def test_policy_stamp_follows_the_weights(t2, tmp_path):
    """The script's evaluation cache is keyed by this stamp: a policy retrained into the same folder
    (same path, new weights) must not reuse the old results."""
    (tmp_path / "model.safetensors").write_bytes(b"a")
    before = t2.policy_stamp(tmp_path)
    assert str(tmp_path) in before and t2.policy_stamp(tmp_path) == before
    (tmp_path / "model.safetensors").write_bytes(b"bb")
    assert t2.policy_stamp(tmp_path) != before


def test_configs_start_from_the_quickstart_defaults(t2, tmp_path, registry):
    args = t2.parse_args(["--out", str(tmp_path), "--defects", '{"wrong_confusable": 0.3}', "--threads", "2"])
    base = t2.base_config(args, seed=1)
    defaults = RunConfig().model_dump(mode="json")
    # only data, sizes, threads, defects and the per-condition parts differ from the quickstart
    assert base["generation"]["generator"]["name"] == "labels"
    assert base["generation"]["generator"]["options"]["defects"] == {"wrong_confusable": 0.3}
    assert base["policy"]["answer_format"] == defaults["policy"]["answer_format"] == "text"
    rm, rm0 = base["reward"]["model"]["options"], defaults["reward"]["model"]["options"]
    assert {k: v for k, v in rm.items() if k != "threads"} == {k: v for k, v in rm0.items() if k != "threads"}
    assert base["reward"]["grade_set"] == defaults["reward"]["grade_set"]  # no references: the train split's
    refs = t2.base_config(args, seed=1, references=tmp_path / "refs.jsonl")["reward"]["grade_set"]
    assert refs["name"] == defaults["reward"]["grade_set"]["name"]
    assert refs["options"] == {**defaults["reward"]["grade_set"]["options"],
                               "references": [{"format": "samples", "path": str(tmp_path / "refs.jsonl")}]}
    assert base["evaluation"]["evaluator"]["options"]["mode"] == "likelihood"
    assert base["evaluation"]["question_builder"] == defaults["evaluation"]["question_builder"]
    assert base["policy"]["sft"]["options"]["max_steps"] == 500
    assert [s["options"]["preset"] for s in base["data"]["sources"]] == [
        "ham10000", "busi", "pneumoniamnist", "nct-crc", "totalsegmentator", "figure1"]
    assert base["data"]["sources"][2]["options"]["overrides"] == {"use_source_splits": False}

    by_name = {}
    for name in t2.condition_names(args.ks, args.grpo_k):
        cfg = t2.condition_config(base, name, args)
        load_config(data=cfg, registry=registry)  # every condition is a valid run config
        by_name[name] = cfg
    steps = {n: [(s["name"], s["options"]) for s in c["filters"]["steps"]] for n, c in by_name.items()}
    assert steps["sft-raw"] == [("dedup", {}), ("overlap", {})]
    strat = {"stratify_by": ["dataset", "question_type"]}
    assert steps["sft-topk25"][-1] == ("top_k", {"fraction": 0.25, **strat})
    assert steps["sft-randk25"][-1] == ("rand_k", {"fraction": 0.25, **strat})
    assert steps["sft-topk50+grpo"] == steps["sft-topk50"]
    assert by_name["sft-topk50+grpo"]["name"] == "sft-topk50-grpo"
    assert all(c["policy"]["grpo"] is None for n, c in by_name.items() if "+grpo" not in n)
    grpo = by_name["sft-topk50+grpo"]["policy"]["grpo"]
    assert grpo["name"] == defaults["policy"]["grpo"]["name"] == "grpo"
    assert grpo["options"] == {**defaults["policy"]["grpo"]["options"], "max_steps": 20, "num_threads": 2}
    # validation split: the loop evaluates nothing (the test split is never read by a model)
    val = t2.base_config(t2.parse_args(["--out", str(tmp_path), "--split", "val"]), seed=0)
    assert val["evaluation"]["evaluator"] is None
    load_config(data=t2.condition_config(val, "sft-topk25", args), registry=registry)


def synthetic_seed(seed: int, accuracy: dict[str, float], n: int = 200) -> dict:
    """Per-item results: each condition correct on a seeded share of the items."""
    rng = random.Random(seed)
    questions = [{"id": f"q{i}", "modality": "xray" if i % 2 else "dermoscopy", "question_type": "x",
                  "dataset": "d", "chance": 0.25} for i in range(n)]
    conds = {}
    for c, p in accuracy.items():
        correct = [int(rng.random() < p) for _ in range(n)]
        conds[c] = {"correct": {"likelihood": correct}, "valid": {"likelihood": [1] * n},
                    "overall": {"likelihood": {"accuracy": sum(correct) / n}}, "kept": 10}
    return {"seed": seed, "split": "test", "questions": questions, "conditions": conds}


def test_paired_bootstrap_pools_seeds_and_resamples_within_them(t2):
    seeds = [synthetic_seed(s, {"zero-shot": 0.25, "sft-raw": 0.6, "sft-randk25": 0.6, "sft-topk25": 0.8})
             for s in range(3)]
    d = t2.paired_bootstrap(seeds, "sft-topk25", "sft-randk25", "likelihood", resamples=500)
    exact = sum(sum(s["conditions"]["sft-topk25"]["correct"]["likelihood"])
                - sum(s["conditions"]["sft-randk25"]["correct"]["likelihood"]) for s in seeds) / 600
    assert d["n"] == 600 and d["diff"] == pytest.approx(exact)
    assert 0 < d["ci95"][0] < d["diff"] < d["ci95"][1] < 0.35  # a 20-point gain on 600 items: CI above 0
    same = t2.paired_bootstrap(seeds, "sft-raw", "sft-raw", "likelihood", resamples=200)
    assert same == {"diff": 0.0, "ci95": [0.0, 0.0], "n": 600}
    xray = t2.paired_bootstrap(seeds, "sft-topk25", "sft-randk25", "likelihood", "xray", resamples=200)
    assert xray["n"] == 300
    assert t2.paired_bootstrap(seeds, "sft-topk50", "sft-raw", "likelihood") is None  # missing condition
    assert t2.paired_bootstrap(seeds, "sft-topk25", "sft-raw", "generate") is None  # missing mode


def test_combine_writes_table_differences_and_figure(t2, tmp_path):
    acc = {"zero-shot": 0.25, "sft-raw": 0.6, "sft-randk25": 0.55, "sft-topk25": 0.75, "sft-randk50": 0.58,
           "sft-topk50": 0.7, "sft-topk50+grpo": 0.7}
    seeds = [synthetic_seed(s, acc) for s in range(3)]
    paths = []
    for s in seeds:  # the --combine path: one table2.json per seed
        p = tmp_path / f"s{s['seed']}" / "table2.json"
        p.parent.mkdir()
        p.write_text(json.dumps(s))
        paths.append(str(p))
    t2.main(["--combine", *paths, "--out", str(tmp_path / "all"), "--bootstrap", "300"])
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2] and summary["chance"] == pytest.approx(0.25)
    assert set(summary["differences"]) == {"sft-topk25 − sft-randk25", "sft-topk25 − sft-raw",
                                           "sft-topk50 − sft-randk50", "sft-topk50 − sft-raw",
                                           "sft-topk50+grpo − sft-topk50", "sft-raw − zero-shot"}
    top = summary["differences"]["sft-topk25 − sft-randk25"]["likelihood"]["overall"]
    assert top["ci95"][0] > 0
    assert len(summary["accuracy"]["sft-topk25"]["likelihood"]["overall"]) == 3
    md = (tmp_path / "all" / "table2.md").read_text()
    assert "| sft-topk50+grpo |" in md and "sft-topk25 − sft-randk25" in md and "xray (lik.)" in md
    with (tmp_path / "all" / "figure2.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["selection"], r["K"]) for r in rows] == [("topk", "25"), ("topk", "50"), ("topk", "100"),
                                                        ("randk", "25"), ("randk", "50"), ("randk", "100")]
    raw = [float(r["mean"]) for r in rows if r["K"] == "100"]
    assert raw[0] == raw[1]  # K = 100 % is SFT(raw) for both curves
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "all" / "figure2.png").stat().st_size > 1000
