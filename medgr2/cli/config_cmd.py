"""``medgr2 config show``, ``config validate`` and ``config reference``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medgr2.commands import ConfigArg, SetOpt, fail, load_run_config

BEGIN_MARK = "<!-- BEGIN GENERATED: medgr2 config reference -->"
END_MARK = "<!-- END GENERATED -->"


def reference_with_components(registry: object) -> str:
    """What ``docs/config.md``'s generated region holds: every setting, then every component's options."""
    from medgr2.config import reference_markdown

    return reference_markdown() + "\n## Component options\n\n" + components_markdown(registry)


def components_markdown(registry: object) -> str:
    """Markdown tables of the options of every registered component that has an options model."""
    from medgr2.config import reference_rows

    out = []
    for entry in registry:  # type: ignore[attr-defined]
        if entry.config is None:
            continue
        rows = reference_rows(entry.options_model())
        out.append(f"### {entry.kind} `{entry.name}` (plugin `{entry.plugin}`)\n")
        if entry.summary():
            out.append(entry.summary() + "\n")
        out.append("| option | type | default | description |\n|---|---|---|---|")
        out += [f"| `{p}` | {t} | {d} | {desc} |" for p, t, d, desc in rows]
        out.append("")
    return "\n".join(out)


def replace_generated(text: str, generated: str) -> str:
    """``text`` with the region between :data:`BEGIN_MARK` and :data:`END_MARK` replaced."""
    start, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if start < 0 or end < start:
        raise ValueError(f"markers {BEGIN_MARK!r} ... {END_MARK!r} not found")
    return text[: start + len(BEGIN_MARK)] + "\n\n" + generated.strip() + "\n\n" + text[end:]


def register(app: typer.Typer) -> None:
    """Add the ``config`` command group to ``app``."""
    group = typer.Typer(help="Show, validate and document run configs.", no_args_is_help=True)
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

    @group.command("reference")
    def reference(
        components: Annotated[bool, typer.Option(
            "--components", help="Also list the options of every registered component.")] = False,
        update: Annotated[Path | None, typer.Option(
            "--update", help="Rewrite the generated region of this Markdown file (e.g. docs/config.md).")] = None,
    ) -> None:
        """Print every config setting (path, type, default, description) as Markdown tables."""
        from medgr2.config import reference_markdown
        from medgr2.plugins import get_registry
        from medgr2.store import atomic_write_text

        text = reference_with_components(get_registry()) if components else reference_markdown()
        if update is None:
            typer.echo(text, nl=False)
            return
        try:
            atomic_write_text(update, replace_generated(update.read_text(encoding="utf-8"), text))
        except (OSError, ValueError) as exc:
            fail(f"cannot update {update}: {exc}")
        typer.echo(f"updated {update}")
