"""The ``medgr2`` command line: thin Typer commands over library functions.

Commands live in one module per area (``medgr2/cli/<area>.py``, each with ``register(app)``);
plugins add their own through the ``medgr2_register_commands`` hook. Nothing heavy is imported
until a command runs, so ``medgr2 --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from medgr2 import commands as common
from medgr2.registry import RegistryError

AREAS = ("plugins_cmd", "config_cmd", "data_cmd", "generate", "reward", "filters", "train", "run")


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
        _load_plugin_commands(app)
    except (plugins.PluginLoadError, RegistryError) as exc:
        common.fail(str(exc))
    return app


def _load_plugin_commands(app: typer.Typer) -> None:
    """Load the plugins and their commands; each plugin failure becomes one line on stderr."""
    import warnings

    from medgr2 import plugins

    with warnings.catch_warnings():
        # the CLI prints failures itself, once each and on one line (below)
        warnings.simplefilter("ignore", plugins.PluginWarning)
        ps = plugins.default_plugins()
        for impl, call in plugins.plugin_hook_calls(ps.pm, "medgr2_register_commands"):
            try:
                call(cli=app)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
                ps.fail(repr(impl.plugin_name), f"failed in medgr2_register_commands: {exc!r}", exc)
    for line in ps.failures:
        sys.stderr.write(f"medgr2: warning: {line} (skipped; MEDGR2_STRICT_PLUGINS=1 makes this an error)\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``medgr2`` script."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app = build_app(args)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    app(args=args, prog_name="medgr2")
