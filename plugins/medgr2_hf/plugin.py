"""medgr2_hf plugin: the ``medgr2 models`` commands (tiny offline VLMs).

Light on purpose: torch and transformers are imported inside the command bodies only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medgr2 import hookimpl


def tiny_command(
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    arch: Annotated[str, typer.Option("--arch", help="qwen2_5_vl or llava.")] = "qwen2_5_vl",
    size: Annotated[str, typer.Option("--size", help="tiny (64 wide, 2 layers) or small (256 wide, 4 layers).")]
    = "tiny",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights.")] = 0,
    texts: Annotated[Path | None, typer.Option(
        "--texts", help="Optional text file (one text per line) to train the tokenizer on.")] = None,
) -> None:
    """Build a deterministic tiny VLM (random weights) that loads offline."""
    from medgr2.commands import fail, print_json
    from medgr2_hf.tiny import ARCHS, SIZES

    if arch not in ARCHS:
        fail(f"unknown --arch {arch!r}: use one of {', '.join(ARCHS)}")
    if size not in SIZES:
        fail(f"unknown --size {size!r}: use one of {', '.join(SIZES)}")
    lines = None
    if texts is not None:
        if not texts.is_file():
            fail(f"--texts {texts} does not exist")
        lines = [t for t in texts.read_text(encoding="utf-8").splitlines() if t.strip()]
    from medgr2_hf.tiny import build_tiny_vlm

    path = build_tiny_vlm(arch, out, seed=seed, size=size, texts=lines)  # type: ignore[arg-type]
    print_json({"model": str(path), "arch": arch, "size": size, "seed": seed})


@hookimpl
def medgr2_register_commands(cli: Any) -> None:
    """Add ``medgr2 models tiny``."""
    models = typer.Typer(name="models", help="Local models: build tiny offline VLMs.", no_args_is_help=True)
    models.command("tiny")(tiny_command)
    cli.add_typer(models, name="models")


@hookimpl
def medgr2_register_tiny_policies(registry: Any) -> None:
    """``qwen2_5_vl`` and ``llava``: the offline tiny VLMs the loop starts from when ``policy.model`` is unset."""
    registry.add("qwen2_5_vl", "medgr2_hf.tiny:build_tiny_qwen2_5_vl",
                 description="A deterministic tiny Qwen2.5-VL with a locally trained tokenizer")
    registry.add("llava", "medgr2_hf.tiny:build_tiny_llava",
                 description="A deterministic tiny LLaVA (CLIP vision + Qwen2 text) with a locally trained tokenizer")
