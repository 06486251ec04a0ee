"""``medgr2 plugins list``: every registered component and where it comes from."""

from __future__ import annotations

import typer

from medgr2.cli.common import JsonOpt, print_json


def list_components() -> list[dict[str, object]]:
    """Every registered component as a plain dict (kind, name, plugin, distribution, version)."""
    from medgr2.plugins import get_registry

    return [
        {"kind": e.kind, "name": e.name, "plugin": e.plugin, "distribution": e.distribution,
         "version": e.version, "description": e.summary()}
        for e in get_registry()
    ]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Inspect loaded plugins.", no_args_is_help=True)
    app.add_typer(group, name="plugins")

    @group.command("list")
    def plugins_list(as_json: JsonOpt = False) -> None:
        """List every registered component with its kind, name, plugin, distribution and version."""
        from medgr2.plugins import get_registry

        rows = list_components()
        if as_json:
            print_json(rows)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("kind", "name", "plugin", "distribution", "description")
        for r in rows:
            dist = f"{r['distribution']} {r['version']}" if r["distribution"] else "-"
            table.add_row(str(r["kind"]), str(r["name"]), str(r["plugin"]), dist, str(r["description"]))
        console = Console()
        console.print(table)
        for w in get_registry().warnings:
            console.print(f"[yellow]warning:[/] {w}", highlight=False)
