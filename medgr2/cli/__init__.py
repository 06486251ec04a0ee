"""The ``medgr2`` command line: thin Typer commands over library functions.

Commands live in one module per area (``medgr2/cli/<area>.py``, each with ``register(app)``);
plugins add their own through the ``medgr2_register_commands`` hook. Nothing heavy is imported
until a command runs, so ``medgr2 --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from medgr2.cli import common

AREAS = ("plugins_cmd", "config_cmd", "data", "generate", "reward", "train", "eval", "run")


def _prescan(argv: Sequence[str]) -> tuple[list[str], list[str], bool]:
    """Read --plugin/--no-plugin/--strict-plugins before Typer runs (plugins may add commands)."""
    plugins, disabled, strict = [], [], False
    it = iter(argv)
    for arg in it:
        for flag, bucket in (("--plugin", plugins), ("--no-plugin", disabled)):
            if arg == flag:
                bucket.append(next(it, ""))
            elif arg.startswith(flag + "="):
                bucket.append(arg.split("=", 1)[1])
        if arg == "--strict-plugins":
            strict = True
    return plugins, disabled, strict


def build_app(argv: Sequence[str] = ()) -> typer.Typer:
    """The Typer application, with core and plugin commands."""
    import importlib

    from medgr2 import plugins

    app = typer.Typer(
        name="medgr2", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
        help="MedGR2: generate, reward-filter and train on medical VQA data.",
    )
    app.callback()(common.root_options)
    for area in AREAS:
        importlib.import_module(f"medgr2.cli.{area}").register(app)
    p, d, strict = _prescan(argv)
    plugins.configure(p, d, strict or None)
    try:
        plugins.default_plugins().pm.hook.medgr2_register_commands(cli=app)
    except plugins.PluginLoadError as exc:
        common.fail(str(exc))
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``medgr2`` script."""
    args = list(sys.argv[1:] if argv is None else argv)
    app = build_app(args)
    app(args=args, prog_name="medgr2")
