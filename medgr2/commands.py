"""The helpers a command uses, medgr2's own and those plugins add (``medgr2_register_commands``).

A documented, stable API for plugin commands: the common options (:data:`ConfigArg`, :data:`SetOpt`,
:data:`JsonOpt`, :data:`CycleOpt`), :func:`load_run_config` (load and fully validate a run config,
exit 2 listing every problem), :func:`fail` (one red line on stderr and an exit code),
:func:`print_json` and :func:`reporter`. Typer is imported here, never torch or an SDK.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

ConfigArg = Annotated[Path | None, typer.Argument(help="Run config (YAML or TOML); defaults apply without one.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Dotted override, e.g. --set seed=3 (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
CycleOpt = Annotated[int, typer.Option(
    "--cycle", min=1, help="Run as the loop's cycle N (its seed is seed + N), so the output matches `medgr2 run`'s.")]


def root_options(
    plugin: Annotated[list[str] | None, typer.Option(
        "--plugin", help="Load a plugin: entry-point name, dotted module or path/to/file.py (repeatable).")] = None,
    no_plugin: Annotated[list[str] | None, typer.Option(
        "--no-plugin", help="Do not load the plugin NAME (repeatable).")] = None,
    strict_plugins: Annotated[bool, typer.Option(
        "--strict-plugins", help="A plugin that fails to load is an error (also MEDGR2_STRICT_PLUGINS=1).")] = False,
) -> None:
    """MedGR2: generate, reward-filter and train on medical VQA data."""
    # The values were read before Typer ran (medgr2.cli._prescan): plugins can add commands.


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error to stderr and exit with ``code`` (2: bad input)."""
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load_run_config(path: Path | None, overrides: list[str] | None) -> Any:
    """Load and fully validate a run config against the loaded plugins; exit 2 on any problem."""
    from medgr2.config import ConfigError, load_config
    from medgr2.plugins import get_registry

    import warnings

    from rich.console import Console

    registry = get_registry()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            config = load_config(path, overrides or [], registry=registry)
        except ConfigError as e:
            fail(str(e))
    for w in caught:
        Console(stderr=True).print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
    return config


def reporter(quiet: bool = False) -> Any:
    """A rich progress reporter on stderr, or a silent one when ``quiet``."""
    from medgr2.progress import RichReporter, SilentReporter

    return SilentReporter() if quiet else RichReporter()


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    import json
    import sys

    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
