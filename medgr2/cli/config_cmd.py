"""``medgr2 config show`` and ``medgr2 config validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medgr2.cli.common import ConfigArg, SetOpt, load_run_config


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Show and validate run configs.", no_args_is_help=True)
    app.add_typer(group, name="config")

    @group.command("show")
    def show(
        config: ConfigArg = None,
        set_: SetOpt = None,
        resolved: Annotated[bool, typer.Option("--resolved", help="Fill in every component's option defaults.")] = False,
    ) -> None:
        """Print the effective config (defaults < file < --set) as YAML."""
        from medgr2.config import dump_yaml, resolved_dict
        from medgr2.plugins import get_registry

        cfg = load_run_config(config, set_)
        typer.echo(dump_yaml(resolved_dict(cfg, get_registry() if resolved else None)), nl=False)

    @group.command("validate")
    def validate(config: Annotated[Path, typer.Argument(help="The config file to check.")], set_: SetOpt = None) -> None:
        """Check a config file; every problem is reported at once (exit code 2)."""
        load_run_config(config, set_)
        typer.echo(f"{config}: OK")
