"""CLI commands of the reward area: ``medgr2 train-rm`` and ``medgr2 score``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medgr2.cli.common import ConfigArg, JsonOpt, SetOpt

SamplesOpt = Annotated[Path | None, typer.Option("--samples", help="VQA samples (JSONL).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _work_dir(config: Any, out: Path | None) -> Path:
    return out if out is not None else config.run_dir / "reward-model"


def train_rm(
    config_path: ConfigArg = None,
    overrides: SetOpt = None,
    samples: Annotated[Path | None, typer.Option(
        "--samples", help="VQA samples (JSONL) whose answers seed the grade set when no reference is configured.")]
        = None,
    out: Annotated[Path | None, typer.Option("--out", help="Work folder (default: RUN_DIR/reward-model).")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build the 4-grade set from reward.references / grade_sources / samples, train R_φ, write calibration."""
    from medgr2.cli.common import fail, load_run_config, print_json, reporter
    from medgr2.interfaces import StageContext
    from medgr2.plugins import get_registry
    from medgr2.stages.reward import train_reward_model
    from medgr2.store import read_jsonl, write_json, write_jsonl

    config = load_run_config(config_path, overrides)
    registry = get_registry()
    build_grade_set = registry.get("function", "reward.grade_set")
    rep = reporter(quiet)
    work = _work_dir(config, out)
    cfg = config.reward
    try:
        seed_samples = read_jsonl(samples, _sample_type()) if samples else []
        if not (cfg.references or cfg.grade_sources or seed_samples):
            seed_samples = _data_samples(config, registry)
        train, held_out = build_grade_set(cfg.grade_sources, registry, samples=seed_samples,
                                          references=cfg.references, options=cfg.grading, seed=config.seed,
                                          reporter=rep)
        work.mkdir(parents=True, exist_ok=True)
        write_jsonl(work / "grades-train.jsonl", train)
        write_jsonl(work / "grades-heldout.jsonl", held_out)
        rm = registry.create("reward_model", cfg.model.name, cfg.model.options)
        ctx = StageContext(work_dir=work, seed=config.seed, reporter=rep, registry=registry)
        result = train_reward_model(rm, train, held_out, ctx)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc))
    write_json(work / "result.json", result)
    summary = {"version": result.version, "checkpoint": result.checkpoint, "train": len(train),
               "held_out": len(held_out), "wall_s": round(result.wall_s, 1), **result.metrics}
    if as_json:
        print_json(summary)
    else:
        for k, v in summary.items():
            rep.log(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")


def _sample_type() -> Any:
    from medgr2.data import VQASample

    return VQASample


def _data_samples(config: Any, registry: Any) -> list[Any]:
    """Train-split ready-made samples of the configured data sources (the quickstart's grade data)."""
    out = []
    for spec in config.data.sources:
        loaded = registry.create("dataset", spec.name, spec.options).load()
        out += [s for s in loaded.samples if s.split in (None, "train")]
    return out


def _latest_checkpoint(work: Path) -> Path | None:
    import json

    latest = work / "latest.json"
    if latest.is_file():
        return Path(json.loads(latest.read_text(encoding="utf-8"))["path"])
    return None


def score(
    config_path: ConfigArg = None,
    overrides: SetOpt = None,
    samples: SamplesOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Scored samples (JSONL) to write.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="Saved reward model folder (default: the model's checkpoint option, else the latest "
                             "version under RUN_DIR/reward-model).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Score VQA samples with R_φ: each gets reward = RewardBreakdown(total, terms, model_version)."""
    from medgr2.cli.common import fail, load_run_config, reporter
    from medgr2.interfaces import StageContext
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
            checkpoint = _latest_checkpoint(_work_dir(config, None))
            if checkpoint is None:
                fail(f"no trained reward model: run `medgr2 train-rm` first or pass --checkpoint "
                     f"(looked in {_work_dir(config, None)})")
        if checkpoint is not None:
            rm.load(checkpoint)
        items = read_jsonl(samples, _sample_type())
        ctx = StageContext(work_dir=out.parent, seed=config.seed, reporter=rep, registry=registry)
        scored = score_samples(rm, items, ctx)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc))
    write_jsonl(out, scored)
    rep.log(f"scored {len(scored)} samples with {rm.version} -> {out}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("train-rm")(train_rm)
    app.command("score")(score)
