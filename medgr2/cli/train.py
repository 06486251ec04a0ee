"""``medgr2 sft`` and ``medgr2 grpo``: train the policy from a samples file, config-driven.

Both run the trainer named in the config (``policy.sft`` / ``policy.grpo``) on the samples of a
JSONL file (one :class:`~medgr2.data.VQASample` per line). They work under
``accelerate launch`` (each process runs the same command; see ``examples/accelerate``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from medgr2.commands import ConfigArg, CycleOpt, SetOpt, fail, print_json

SamplesOpt = Annotated[Path, typer.Option("--samples", help="JSONL of VQA samples to train on.")]
ModelOpt = Annotated[Path | None, typer.Option(
    "--model", help="Starting policy folder (default: policy.model, else a tiny VLM built under --out).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output folder (checkpoints, metrics.jsonl, final/).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress output.")]
RewardModelOpt = Annotated[Path | None, typer.Option(
    "--reward-model", help="Folder of a trained reward model R_φ to load (the config's reward.model type).")]


def _read_samples(path: Path) -> list[Any]:
    from medgr2.data import VQASample
    from medgr2.store import read_jsonl

    if not path.is_file():
        fail(f"--samples {path} does not exist")
    try:
        samples = read_jsonl(path, VQASample)
    except ValueError as exc:
        fail(f"--samples {path}: a line is not a valid VQA sample: {exc}")
    if not samples:
        fail(f"--samples {path} holds no samples")
    return samples


def _reward_model(config: Any, registry: Any, folder: Path | None, quiet: bool) -> Any:
    spec = config.reward.model
    model = registry.create("reward_model", spec.name, spec.options)
    if folder is not None:
        if not folder.is_dir():
            fail(f"--reward-model {folder} is not a folder")
        model.load(folder)
    elif not quiet:
        typer.echo(f"note: R_φ {spec.name!r} built from config without --reward-model: its weights are "
                   "whatever the plugin starts with (untrained unless it loads its own)", err=True)
    return model


def _run(stage: str, config_path: Path | None, overrides: list[str] | None, samples_path: Path,
         model: Path | None, out: Path, quiet: bool, reward_model: Path | None = None, *, cycle: int = 1) -> None:
    from medgr2.commands import load_run_config, reporter
    from medgr2.stages import stage_context
    from medgr2.plugins import get_registry
    from medgr2.hub import resolve_model
    from medgr2.stages.train import ensure_policy, train_policy

    config = load_run_config(config_path, overrides)
    spec = getattr(config.policy, stage)
    if spec is None:
        fail(f"policy.{stage} is null in the config: name a trainer, e.g. --set policy.{stage}.name={stage}")
    registry = get_registry()
    samples = _read_samples(samples_path)
    try:
        start = resolve_model(str(model), what="--model") if model else ensure_policy(config.policy, out,
                                                                                    seed=config.seed)
        trainer = registry.create("trainer", spec.name, spec.options)
        rm = _reward_model(config, registry, reward_model, quiet) if getattr(trainer, "needs_reward_model", False) \
            else None
        context = stage_context(config, out, cycle=cycle, reporter=reporter(quiet), registry=registry,
                                reward_model=rm)
        result = train_policy(trainer, samples, start, out, context)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    if int(os.environ.get("RANK", "0")) == 0:  # under accelerate/torchrun, one process reports
        print_json({"checkpoint": result.checkpoint, "metrics": result.metrics, "wall_s": round(result.wall_s, 2)})


def register(app: typer.Typer) -> None:
    """Add ``medgr2 sft`` and ``medgr2 grpo`` to ``app``."""

    @app.command("sft")
    def sft(config: ConfigArg = None, samples: SamplesOpt = Path("samples.jsonl"), model: ModelOpt = None,
            out: OutOpt = Path("runs/sft"), overrides: SetOpt = None, quiet: QuietOpt = False,
            cycle: CycleOpt = 1) -> None:
        """Supervised fine-tuning of the policy on VQA samples (the trainer in policy.sft)."""
        _run("sft", config, overrides, samples, model, out, quiet, cycle=cycle)

    @app.command("grpo")
    def grpo(config: ConfigArg = None, samples: SamplesOpt = Path("samples.jsonl"), model: ModelOpt = None,
             out: OutOpt = Path("runs/grpo"), reward_model: RewardModelOpt = None, overrides: SetOpt = None,
             quiet: QuietOpt = False, cycle: CycleOpt = 1) -> None:
        """GRPO of the policy with the weighted reward terms of policy.grpo (default 0.8 R_φ + 0.2 match)."""
        _run("grpo", config, overrides, samples, model, out, quiet, reward_model, cycle=cycle)
