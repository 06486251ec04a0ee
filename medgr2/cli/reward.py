"""CLI commands of the reward area: ``medgr2 train-rm`` and ``medgr2 score``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medgr2.artifacts import GRADES_HELDOUT, GRADES_TRAIN, MANIFEST, RESULT
from medgr2.commands import ConfigArg, CycleOpt, JsonOpt, SetOpt

SamplesOpt = Annotated[Path | None, typer.Option("--samples", help="VQA samples (JSONL).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _work_dir(config: Any, out: Path | None) -> Path:
    return out if out is not None else config.run_dir / "reward-model"


def train_rm(
    config_path: ConfigArg = None,
    overrides: SetOpt = None,
    samples: Annotated[Path | None, typer.Option(
        "--samples", help="VQA samples (JSONL) that replace the run's train-split samples as the grade set's "
                          "fallback references.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Work folder (default: RUN_DIR/reward-model).")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The reward-init stage alone: build the graded set (reward.grade_set), train R_φ v0, write calibration.

    It builds the same graded set and the same model as `medgr2 run`'s reward-init for the same
    config and seed.
    """
    from medgr2.commands import fail, load_run_config, print_json, reporter
    from medgr2.data import VQASample
    from medgr2.stages import stage_context
    from medgr2.plugins import get_registry
    from medgr2.stages.seed import load_seed
    from medgr2.stages.reward import init_reward_model
    from medgr2.store import read_jsonl

    config = load_run_config(config_path, overrides)
    registry = get_registry()
    rep = reporter(quiet)
    work = _work_dir(config, out)
    try:
        seed = load_seed(config.data.sources, registry, reporter=rep)
        given = read_jsonl(samples, VQASample) if samples else None
        ctx = stage_context(config, work, cycle=0, reporter=rep, registry=registry)
        work.mkdir(parents=True, exist_ok=True)
        result = init_reward_model(config, seed, ctx, samples=given)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc))
    summary = {"version": result.version, "checkpoint": result.checkpoint,
               "train": len(read_jsonl(work / GRADES_TRAIN)), "held_out": len(read_jsonl(work / GRADES_HELDOUT)),
               "wall_s": round(result.wall_s, 1), **result.metrics}
    if as_json:
        print_json(summary)
    else:
        for k, v in summary.items():
            rep.log(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")


def _latest_checkpoint(config: Any) -> Path | None:
    """The newest R_φ of the configured run: its last promoted reward-update, else its reward-init, else
    what ``medgr2 train-rm`` wrote under RUN_DIR/reward-model."""
    from medgr2.store import RunStore, read_json

    store = RunStore(config.run_dir)
    records = store.manifest()["stages"] if (config.run_dir / MANIFEST).exists() else {}
    for key in sorted(records, reverse=True):
        rec = records[key]
        if key.endswith(("/reward-update", "/reward-init")) and not rec.get("partial"):
            if rec.get("outputs", {}).get("checkpoint"):
                return Path(rec["outputs"]["checkpoint"])
    result = _work_dir(config, None) / RESULT
    return Path(read_json(result)["checkpoint"]) if result.is_file() else None


def score(
    config_path: ConfigArg = None,
    overrides: SetOpt = None,
    samples: SamplesOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Scored samples (JSONL) to write.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="Saved reward model folder (default: the model's checkpoint option, else the latest "
                             "version under RUN_DIR/reward-model).")] = None,
    quiet: QuietOpt = False,
    cycle: CycleOpt = 1,
) -> None:
    """Score VQA samples with R_φ: each gets reward = RewardBreakdown(total, terms, model_version)."""
    from medgr2.commands import fail, load_run_config, reporter
    from medgr2.stages import stage_context
    from medgr2.plugins import get_registry
    from medgr2.stages.reward import score_samples
    from medgr2.store import read_jsonl, write_jsonl

    if samples is None or out is None:
        fail("give --samples FILE.jsonl and --out FILE.jsonl")
    config = load_run_config(config_path, overrides)
    registry = get_registry()
    rep = reporter(quiet)
    spec = config.reward.model
    try:
        rm = registry.create("reward_model", spec.name, spec.options)
        if checkpoint is None and not spec.options.get("checkpoint"):
            checkpoint = _latest_checkpoint(config)
            if checkpoint is None:
                fail(f"no trained reward model: run `medgr2 train-rm` or `medgr2 run` first, or pass --checkpoint "
                     f"(looked in {config.run_dir}: its manifest, then {_work_dir(config, None)})")
        if checkpoint is not None:
            rm.load(checkpoint)
        from medgr2.data import VQASample

        items = read_jsonl(samples, VQASample)
        ctx = stage_context(config, out.parent, cycle=cycle, reporter=rep, registry=registry)
        scored = score_samples(rm, items, ctx)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc))
    write_jsonl(out, scored)
    rep.log(f"scored {len(scored)} samples with {rm.version} -> {out}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("train-rm")(train_rm)
    app.command("score")(score)
