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
def medgr2_register_functions(registry: Any) -> None:
    """The grade-set builder and the policy-sample labeller the loop and ``medgr2 train-rm`` use."""
    registry.add("reward.grade_set", "medgr2_reward.stages:build_grade_set",
                 description="Build the 4-grade R_φ set (10 / 6 / 0 / −6) from reference texts or VQA samples")
    registry.add("reward.calibration", "medgr2_reward.calibration:write_calibration",
                 description="Write calibration.json + plot (Spearman, per-grade mean/std, pairwise ordering)")
    registry.add("reward.label_policy_samples", "medgr2_reward.stages:label_policy_samples",
                 description="Label policy answers (match, judge or grade) for continual R_φ training")


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

    from medgr2.cli.common import fail
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
