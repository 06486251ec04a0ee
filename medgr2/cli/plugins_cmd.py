"""``medgr2 plugins list``: every registered component and where it comes from."""

from __future__ import annotations

from typing import Any

import typer

from medgr2.cli.common import JsonOpt, print_json


def _target_name(target: Any) -> str:
    """``"module:attr"`` for a lazy string or an imported object (nothing is imported here)."""
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", None) or type(target).__module__
    qual = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}:{qual}"


def list_components(registry: Any = None) -> list[dict[str, Any]]:
    """Every registered component as a plain dict.

    Keys: ``kind``, ``name``, ``plugin``, ``distribution``, ``version``, ``target`` (the
    ``module:attr`` it resolves to, not imported) and ``description``.
    """
    if registry is None:
        from medgr2.plugins import get_registry

        registry = get_registry()
    return [
        {"kind": e.kind, "name": e.name, "plugin": e.plugin, "distribution": e.distribution,
         "version": e.version, "target": _target_name(e.target), "description": e.summary()}
        for e in registry
    ]


def register(app: typer.Typer) -> None:
    """Add ``medgr2 plugins list`` to ``app``."""
    group = typer.Typer(help="Inspect loaded plugins.", no_args_is_help=True)
    app.add_typer(group, name="plugins")

    @group.command("list")
    def plugins_list(as_json: JsonOpt = False) -> None:
        """List every registered component with its kind, name, plugin, distribution and version.

        Plugins that failed to load are reported on stderr, one line each.
        """
        rows = list_components()
        if as_json:
            print_json(rows)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("kind", "name", "plugin", "distribution", "version", "description")
        for r in rows:
            table.add_row(str(r["kind"]), str(r["name"]), str(r["plugin"]), str(r["distribution"] or "-"),
                          str(r["version"] or "-"), str(r["description"]))
        Console().print(table)
