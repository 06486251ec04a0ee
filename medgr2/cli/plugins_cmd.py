"""``medgr2 plugins list``: every registered component and where it comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medgr2.commands import JsonOpt, fail, print_json


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
    from medgr2.plugins import ensure_registry

    registry = ensure_registry(registry)
    return [
        {"kind": e.kind, "name": e.name, "plugin": e.plugin, "distribution": e.distribution,
         "version": e.version, "target": _target_name(e.target), "description": e.summary()}
        for e in registry
    ]


def register(app: typer.Typer) -> None:
    """Add ``medgr2 plugins list`` to ``app``."""
    group = typer.Typer(help="Inspect loaded plugins.", no_args_is_help=True)
    app.add_typer(group, name="plugins")

    @group.command("docs")
    def plugins_docs(
        update: Annotated[Path | None, typer.Option(
            "--update", help="Rewrite the generated region of this file (docs/plugin-hooks.md) in place.")] = None,
    ) -> None:
        """Print the hooks reference generated from the kinds table (or update it in a docs file)."""
        from medgr2.kinds import hooks_markdown, replace_hooks_markdown

        if update is None:
            typer.echo(hooks_markdown(), nl=False)
            return
        try:
            text = replace_hooks_markdown(update.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            fail(f"{update}: {exc}")
        update.write_text(text, encoding="utf-8")
        typer.echo(f"updated {update}")

    @group.command("list")
    def plugins_list(
        as_json: JsonOpt = False,
        kind: Annotated[str | None, typer.Option("--kind", help="Only this kind (generator, filter ...).")] = None,
    ) -> None:
        """List every registered component with its kind, name, plugin, distribution and version.

        Plugins that failed to load are reported on stderr, one line each.
        """
        from medgr2.kinds import KIND_NAMES
        from medgr2.registry import suggest

        if kind is not None and kind not in KIND_NAMES:
            fail(f"unknown kind {kind!r}.{suggest(kind, KIND_NAMES)} Kinds: {', '.join(KIND_NAMES)}.")
        rows = [r for r in list_components() if kind is None or r["kind"] == kind]
        if as_json:
            print_json(rows)
            return
        import shutil

        for r in rows:
            r["distribution"] = f"{r['distribution']} {r['version'] or ''}".strip() if r["distribution"] else "-"
        columns = ("kind", "name", "plugin", "distribution")
        widths = [max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns]
        room = max(20, shutil.get_terminal_size((100, 24)).columns - sum(widths) - 2 * len(columns))

        def line(cells: list[str], description: str) -> str:
            text = "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
            short = description if len(description) <= room else description[: room - 1] + "…"
            return f"{text}  {short}".rstrip()

        typer.echo(line(list(columns), "description"))
        for r in rows:
            typer.echo(line([str(r[c]) for c in columns], str(r["description"])))
