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

        for r in rows:
            r["distribution"] = f"{r['distribution']} {r['version'] or ''}".strip() if r["distribution"] else "-"
        columns = ("kind", "name", "plugin", "distribution")
        table = Table(box=None, pad_edge=False)
        for column in columns:  # these never shrink; the description takes what is left
            table.add_column(column, no_wrap=True, min_width=max([len(column)] + [len(str(r[column])) for r in rows]))
        table.add_column("description", no_wrap=True, overflow="ellipsis")
        for r in rows:
            table.add_row(*(str(r[c]) for c in columns), str(r["description"]))
        Console().print(table)
