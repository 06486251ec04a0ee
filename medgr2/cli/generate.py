"""``medgr2 generate``: write candidate VQA samples from the seed data with the configured generator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medgr2.commands import ConfigArg, CycleOpt, JsonOpt, SetOpt, fail, load_run_config, print_json, reporter


def _summary(ledger: Any, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("", "value", title=f"generation ledger ({out})")
    rows = [
        ("samples", ledger.successes),
        ("rejects", sum(ledger.rejects.values())),
        ("rejects by reason", ", ".join(f"{k} {v}" for k, v in sorted(ledger.rejects.items())) or "-"),
        ("requests (this run)", ledger.requests),
        ("retries", ledger.retries),
        ("failures", ledger.failures),
        ("cache hits", ledger.extra.get("cache_hits", 0)),
        ("tokens in / out", f"{ledger.input_tokens} / {ledger.output_tokens}"),
        ("cost (this run)", f"${ledger.cost_usd:.4f}"),
        ("wall", f"{ledger.wall_s:.1f} s"),
        ("completed", ledger.extra.get("completed", True)),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    Console(stderr=True).print(table)


RetryRejectsOpt = Annotated[bool, typer.Option(
    "--retry-rejects", help="Ask again for items whose cached reply was a content reject (sets "
    "generation.generator.options.retry_rejects; transport failures are always asked again).")]


def retry_rejects_override(on: bool) -> list[str]:
    """The ``--set`` override of ``--retry-rejects`` (a generator without the option is a config error)."""
    return ["generation.generator.options.retry_rejects=true"] if on else []


def register(app: typer.Typer) -> None:
    """Add the ``generate`` command to ``app``."""

    @app.command("generate")
    def generate_cmd(
        config: ConfigArg = None,
        overrides: SetOpt = None,
        limit: Annotated[
            int | None, typer.Option("--limit", min=1, help="Only the first N selected train items (as "
                                                           "generation.limit does in `medgr2 run`).")
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                help="Output folder (default: <run_dir>/generate); re-running resumes from its cache.",
            ),
        ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
        as_json: JsonOpt = False,
        retry_rejects: RetryRejectsOpt = False,
        cycle: CycleOpt = 1,
    ) -> None:
        """Generate VQA samples from the seed data; write samples.jsonl, rejects.jsonl and ledger.json.

        Interrupt with Ctrl-C to stop gracefully (finished work is kept); run the same command
        again to request only what is missing.
        """
        from medgr2.config import resolved_options
        from medgr2.interfaces import ComponentFailed
        from medgr2.stages import stage_context
        from medgr2.plugins import get_registry
        from medgr2.stages.seed import load_seed
        from medgr2.stages.generate import generate, select_items

        cfg = load_run_config(config, [*(overrides or []), *retry_rejects_override(retry_rejects)])
        registry = get_registry()
        spec = cfg.generation.generator
        generator = registry.create("generator", spec.name, resolved_options(spec, registry))
        seed = load_seed(cfg.data.sources, registry)
        items = select_items(seed, max_items=cfg.data.max_items, run_seed=cfg.seed,
                             limit=limit or cfg.generation.limit)
        work_dir = out or cfg.run_dir / "generate"
        rep = reporter(quiet or as_json)
        context = stage_context(cfg, work_dir, cycle=cycle, reporter=rep, registry=registry)
        try:
            result = generate(generator, items, context)
        except (ComponentFailed, ValueError, OSError) as exc:
            fail(f"generation failed: {exc}", code=1)
        if as_json:
            print_json(result.ledger.model_dump(mode="json"))
        else:
            _summary(result.ledger, work_dir)
        if not result.ledger.extra.get("completed", True):
            signum = getattr(context.stop, "signum", None)
            raise typer.Exit(128 + signum if signum else 130)
        if failed := result.ledger.extra.get("transport_failures"):
            fail(f"{failed} item(s) failed in transport after retries (not final, see rejects.jsonl): run the same "
                 "command again to ask for them", code=1)
