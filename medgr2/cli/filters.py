"""``medgr2 filter``: run the configured filter steps over scored samples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medgr2 import artifacts
from medgr2.commands import ConfigArg, CycleOpt, JsonOpt, SetOpt, fail, load_run_config, print_json, reporter


def read_samples(path: Path, what: str) -> list[Any]:
    """VQASamples from a JSONL file; a missing file or an invalid line exits 2 naming the line."""
    from pydantic import ValidationError

    from medgr2.data import VQASample

    if not path.is_file():
        fail(f"{what} file {path} does not exist")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(VQASample.model_validate_json(line))
        except ValidationError as e:
            fail(f"{path}:{n}: not a valid VQASample ({e.error_count()} error(s)):\n{e}")
    return out


def _print_funnel(funnel: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("step", "in", "kept", "dropped", "dropped by reason", title="filter funnel")
    for s in funnel["steps"]:
        reasons = ", ".join(f"{k} {v}" for k, v in s["dropped_by_reason"].items()) or "-"
        table.add_row(f"{s['index'] + 1}. {s['step']}", str(s["in"]), str(s["kept"]), str(s["dropped"]),
                      reasons)
    console = Console()
    console.print(table)
    console.print(f"kept {funnel['kept']} of {funnel['in']} samples", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``filter`` command to ``app``."""

    @app.command("filter")
    def filter_cmd(
        samples: Annotated[Path, typer.Option("--samples", help="Scored samples (JSONL of VQASample).")],
        out: Annotated[Path, typer.Option("--out", help="Output folder: decisions, kept, funnel.")],
        config: ConfigArg = None,
        overrides: SetOpt = None,
        kept: Annotated[Path | None, typer.Option(
            "--kept", help="D_gen: samples kept earlier (JSONL).")] = None,
        eval_samples: Annotated[Path | None, typer.Option(
            "--eval-samples", help="Evaluation samples (JSONL) the contamination filter protects.")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
        as_json: JsonOpt = False,
        cycle: CycleOpt = 1,
    ) -> None:
        """Filter scored samples with the config's filters.steps.

        Writes decisions.jsonl, kept.jsonl and funnel.json into --out.
        """
        from medgr2.config import resolved_options
        from medgr2.stages import stage_context
        from medgr2.plugins import get_registry
        from medgr2.stages.filter import apply_filters

        cfg = load_run_config(config, overrides)
        registry = get_registry()
        if not cfg.filters.steps:
            fail("filters.steps is empty: nothing to do (add steps, e.g. "
                 "--set 'filters.steps=[{name: threshold}]')")
        candidates = read_samples(samples, "--samples")
        d_gen = read_samples(kept, "--kept") if kept is not None else []
        protected = read_samples(eval_samples, "--eval-samples") if eval_samples is not None else ()
        steps = [(s.name, registry.create("filter", s.name, resolved_options(s, registry)))
                 for s in cfg.filters.steps]
        context = stage_context(cfg, out, cycle=cycle, reporter=reporter(quiet or as_json), registry=registry,
                                eval_samples=tuple(protected))
        try:
            apply_filters(steps, candidates, d_gen, context, allow_overlap=cfg.filters.allow_overlap)
        except (ValueError, TypeError) as e:
            fail(str(e))
        from medgr2.store import read_json

        funnel = read_json(out / artifacts.FUNNEL)
        if as_json:
            print_json(funnel)
        else:
            _print_funnel(funnel)
