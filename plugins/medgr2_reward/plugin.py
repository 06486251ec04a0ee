"""Registers the reward area's components and the ``medgr2 setup wordnet`` command (light module)."""

from __future__ import annotations

from typing import Annotated, Any

from medgr2 import hookimpl


@hookimpl
def medgr2_register_reward_models(registry: Any) -> None:
    """``minilm`` (CPU default: pretrained MiniLM + tiny CNN) and ``vlm`` (a local Qwen2.5-VL / LLaVA)."""
    registry.add("minilm", "medgr2_reward.model:MiniLMRewardModel", config="medgr2_reward.options:MiniLMOptions",
                 description="Regression R_φ on pretrained MiniLM (+ tiny image CNN), scores in [-6, 10]")
    registry.add("vlm", "medgr2_reward.model:VLMRewardModel", config="medgr2_reward.options:VLMRewardOptions",
                 description="Regression R_φ on a local VLM folder: pooled last hidden state + head")


@hookimpl
def medgr2_register_grade_sets(registry: Any) -> None:
    """``four-grade``: the paper's graded R_φ set from reference texts."""
    registry.add("four-grade", "medgr2_reward.grade_set:FourGradeSet", config="medgr2_reward.options:FourGradeOptions",
                 description="The 4-grade R_φ set (10 / 6 / 0 / −6) from reference texts or VQA samples")


@hookimpl
def medgr2_register_policy_labellers(registry: Any) -> None:
    """``match``, ``judge`` and ``grade``: how policy samples become R_φ training data."""
    registry.add("match", "medgr2_reward.labellers:MatchLabeller",
                 description="The policy answers each sample: correct → 10, wrong → −6")
    registry.add("judge", "medgr2_reward.labellers:JudgeLabeller",
                 description="reward.judge scores the policy's answers on the paper's four criteria")
    registry.add("grade", "medgr2_reward.labellers:GradeLabeller",
                 description="Grade perturbations (10 / 6 / 0 / −6) of the samples' own answers")


@hookimpl
def medgr2_register_calibrators(registry: Any) -> None:
    """``grades``: calibration.json + plot (Spearman, per-grade mean/std, pairwise ordering)."""
    registry.add("grades", "medgr2_reward.calibration:GradeCalibrator",
                 description="calibration.json + plot: Spearman, MSE, per-grade mean/std, pairwise ordering")


@hookimpl
def medgr2_register_report_sections(registry: Any) -> None:
    """``reward-calibration``: R_φ's calibration (v0 and every retrain) and the promotion gate's decisions."""
    registry.add("reward-calibration", "medgr2_reward.report_section:CalibrationSection",
                 description="R_φ calibration after reward-init and each reward-update, with the gate's decision")


def _opt(flag: str, help_text: str) -> Any:
    import typer

    return typer.Option(flag, help=help_text)


def setup_wordnet(
    source: Annotated[str, _opt("--source", "Debian-layout WordNet folder.")] = "/usr/share/wordnet",
    man_page: Annotated[str, _opt("--man-page", "lexnames(5WN) man page.")] =
        "/usr/share/man/man5/lexnames.5WN.gz",
    root: Annotated[str | None, _opt("--root", "NLTK data root to write (default: the medgr2 cache).")] = None,
    force: Annotated[bool, _opt("--force", "Rebuild even when a copy exists.")] = False,
) -> None:
    """Make WordNet readable by NLTK offline, from Debian's wordnet-base + wordnet-sense-index."""
    from pathlib import Path

    from medgr2.commands import fail
    from medgr2_reward import wordnet

    try:
        out = wordnet.provision(Path(source), Path(man_page), Path(root) if root else None, force=force)
        reader = wordnet.load_reader(out)
        n = len(reader.synsets("heart"))
    except (wordnet.WordNetUnavailable, OSError) as exc:
        fail(str(exc))
    print(f"WordNet ready under {out / 'corpora' / 'wordnet'} ({n} senses of 'heart')")


@hookimpl
def medgr2_register_commands(cli: Any) -> None:
    """Add ``medgr2 setup wordnet`` (to an existing ``setup`` group when another plugin made one)."""
    import typer

    group = next((g.typer_instance for g in cli.registered_groups if g.name == "setup"), None)
    if group is None:
        group = typer.Typer(help="Provision offline resources.", no_args_is_help=True)
        cli.add_typer(group, name="setup")
    group.command("wordnet")(setup_wordnet)
