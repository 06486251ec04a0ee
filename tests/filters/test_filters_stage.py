"""The filter stage (apply_filters) and the ``medgr2 filter`` command."""

from __future__ import annotations

import json

import pytest
from filters_helpers import ctx_fixture, freg_fixture, make_sample  # noqa: F401 (fixtures)
from typer.testing import CliRunner

from medgr2.data import FilterDecision, VQASample
from medgr2.stages.filter import apply_filters, reason_code
from medgr2.store import read_jsonl, write_jsonl

Q = "Which abnormality is most likely present in the {} on this contrast enhanced abdominal CT image?"


def _batch():
    organs = ["liver", "spleen", "pancreas", "left kidney", "right kidney", "gallbladder"]
    samples = [make_sample(Q.format(o), reward=r) for o, r in zip(organs, [9.0, 2.0, 6.0, 8.0, 7.0, 5.0])]
    dup = samples[0].model_copy(update={"id": "dup-of-liver", "question": Q.format("liver").upper()})
    return samples + [dup]


def _steps(freg, *specs):
    return [(name, freg.create("filter", name, options)) for name, options in specs]


def test_pipeline_order_funnel_and_files(freg, ctx):
    samples = _batch()
    kept_before = [samples[3]]  # the left kidney sample is already in D_gen
    steps = _steps(
        freg,
        ("threshold", {"tau": 5.0}),
        ("dedup", {"image_hash": "key"}),
        ("overlap", {}),
        ("top_k", {"k": 1}),
    )
    kept, decisions = apply_filters(steps, samples, kept_before, ctx)

    # threshold drops spleen (2) and gallbladder (5); dedup drops the copy and left kidney (a copy of
    # D_gen), overlap sees 3 samples (nothing left to drop), top_k keeps the best of liver (9),
    # pancreas (6) and right kidney (7)
    assert [s.id for s in kept] == [samples[0].id]
    per_step = [(d.filter, d.sample_id) for d in decisions]
    assert len(decisions) == 7 + 5 + 3 + 3
    assert ("dedup", samples[1].id) not in per_step  # dropped earlier: not shown again
    assert ("threshold", samples[1].id) in per_step
    funnel = json.loads((ctx.work_dir / "funnel.json").read_text())
    assert [(s["step"], s["in"], s["kept"], s["dropped"]) for s in funnel["steps"]] == [
        ("threshold", 7, 5, 2),
        ("dedup", 5, 3, 2),
        ("overlap", 3, 3, 0),
        ("top_k", 3, 1, 2),
    ]
    assert funnel["steps"][1]["dropped_by_reason"] == {"exact_duplicate": 1, "duplicate_of_kept": 1}
    assert funnel["steps"][0]["kept_by_reason"] == {"above_threshold": 5}
    assert funnel["in"] == 7 and funnel["kept"] == 1
    assert read_jsonl(ctx.work_dir / "decisions.jsonl", FilterDecision) == decisions
    assert read_jsonl(ctx.work_dir / "kept.jsonl", VQASample) == kept


@pytest.mark.parametrize(("allow", "n_kept"), [(False, 1), (True, 2)])
def test_allow_overlap_reaches_the_overlap_filter(freg, ctx, allow, n_kept):
    samples = _batch()[:2]
    kept, decisions = apply_filters(
        _steps(freg, ("overlap", {})), samples, [samples[1]], ctx, allow_overlap=allow
    )
    assert len(kept) == n_kept
    assert reason_code(decisions[1].reason) == ("in_dgen_allowed" if allow else "in_dgen")
    assert ctx.allow_overlap is False  # the caller's context is not changed


class _Broken:
    def __init__(self, result):
        self.result = result

    def apply(self, samples, kept, context):
        return self.result(samples)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (lambda s: [], "returned 0 decisions for 7 samples"),
        (
            lambda s: [
                FilterDecision(sample_id=x.id, filter="b", keep=True, reason="ok") for x in reversed(s)
            ],
            "decisions must follow the input order",
        ),
        (
            lambda s: [FilterDecision(sample_id=x.id, filter="b", keep=True, reason=" ") for x in s],
            "without a reason",
        ),
        (lambda s: tuple(s), "must return a list of FilterDecision"),
    ],
)
def test_a_misbehaving_filter_is_named(ctx, result, message):
    with pytest.raises((ValueError, TypeError), match=message) as info:
        apply_filters([("broken", _Broken(result))], _batch(), [], ctx)
    assert "'broken'" in str(info.value)


def test_reason_code():
    assert reason_code("below_threshold: reward 1 <= tau 5") == "below_threshold"
    assert reason_code("free text without a code") == "free text without a code"


# ------------------------------------------------------------------ CLI


def _cli(args):
    """Run ``medgr2`` with the core fakes loaded (``fake`` components stand in for other areas)."""
    from medgr2.cli import build_app

    args = ["--plugin", "medgr2.testing", *args]
    return CliRunner().invoke(build_app(args), args)


def _config(tmp_path, steps):
    """A run config whose non-filter components are the core fakes, so only the filters are exercised."""
    import yaml

    from medgr2.config import RunConfig, iter_component_specs

    data = RunConfig().model_dump(mode="json")
    for _, kind, spec in iter_component_specs(RunConfig, data):
        if kind != "filter":
            spec.update(name="fake", options={})
    data["filters"] = {"steps": steps}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_cli_filter_writes_funnel(tmp_path):
    samples = _batch()
    write_jsonl(tmp_path / "scored.jsonl", samples)
    write_jsonl(tmp_path / "kept.jsonl", [samples[3]])
    cfg = _config(
        tmp_path,
        [
            {"name": "threshold", "options": {"tau": 5.0}},
            {"name": "dedup", "options": {"image_hash": "key"}},
            {"name": "overlap"},
        ],
    )
    out = tmp_path / "out"
    res = _cli(
        [
            "filter",
            cfg,
            "--samples",
            str(tmp_path / "scored.jsonl"),
            "--kept",
            str(tmp_path / "kept.jsonl"),
            "--out",
            str(out),
            "--json",
        ]
    )
    assert res.exit_code == 0, res.output
    funnel = json.loads(res.stdout)
    assert funnel["kept"] == 3 and [s["step"] for s in funnel["steps"]] == ["threshold", "dedup", "overlap"]
    assert len(read_jsonl(out / "kept.jsonl")) == 3
    res = _cli(
        [
            "filter",
            cfg,
            "--samples",
            str(tmp_path / "scored.jsonl"),
            "--kept",
            str(tmp_path / "kept.jsonl"),
            "--out",
            str(out),
            "--set",
            "filters.allow_overlap=true",
            "--quiet",
        ]
    )
    assert res.exit_code == 0, res.output
    assert "kept 4 of 7 samples" in res.stdout


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unscored", "has no reward"),
        ("bad_line", "scored.jsonl:2: not a valid VQASample"),
        ("missing", "does not exist"),
        ("bad_option", "tauu"),
    ],
)
def test_cli_filter_errors_exit_2(tmp_path, setup, message):
    scored = tmp_path / "scored.jsonl"
    samples = _batch()
    if setup == "unscored":
        samples[2] = samples[2].model_copy(update={"reward": None})
    write_jsonl(scored, samples)
    if setup == "bad_line":
        scored.write_text(scored.read_text().splitlines()[0] + '\n{"id": 1}\n')
    if setup == "missing":
        scored.unlink()
    steps = [{"name": "threshold", "options": {"tauu": 1} if setup == "bad_option" else {}}]
    res = _cli(["filter", _config(tmp_path, steps), "--samples", str(scored), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert message in res.output
