"""``medgr2 run`` (Algorithm 1 end to end) and ``medgr2 report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medgr2 import artifacts
from medgr2.commands import ConfigArg, SetOpt, fail, load_run_config, reporter
from medgr2.cli.generate import RetryRejectsOpt, retry_rejects_override


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        config: ConfigArg = None,
        set_: SetOpt = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run: skip stages done with the "
                                             "same inputs and config, redo the rest.")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Move an existing run directory aside "
                                                "and start again.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
        retry_rejects: RetryRejectsOpt = False,
    ) -> None:
        """Run the MedGR2 loop. With no config: the offline CPU quickstart (demo corpus, tiny policy)."""
        from medgr2.loop import RunDirectoryExists, StartedUnderLauncher, refuse_distributed_start, run
        from medgr2.interfaces import ComponentFailed
        from medgr2.stages import StageFailed, StageIncomplete

        try:
            refuse_distributed_start(config)
        except StartedUnderLauncher as e:
            fail(str(e))
        cfg = load_run_config(config, [*(set_ or []), *retry_rejects_override(retry_rejects)])
        rep = reporter(quiet)
        try:
            result = run(cfg, reporter=rep, resume=resume, overwrite=overwrite)
        except RunDirectoryExists as e:
            fail(str(e))
        except StageIncomplete as e:
            fail(f"stopped: {e}", code=e.exit_code)
        except (StageFailed, ComponentFailed) as e:
            fail(f"{e}\nCompleted stages are kept in {cfg.run_dir}: fix the cause and continue with --resume.", code=1)
        except KeyboardInterrupt:
            fail("interrupted: finished stages are kept; continue with `medgr2 run ... --resume`", code=130)
        except Exception as e:  # noqa: BLE001 - one clear line; the traceback with MEDGR2_DEBUG=1
            import os

            if os.environ.get("MEDGR2_DEBUG"):
                raise
            fail(f"{type(e).__name__}: {e}\nCompleted stages are kept in {cfg.run_dir}: fix the cause and "
                 "continue with --resume (MEDGR2_DEBUG=1 shows the traceback).", code=1)
        for c in result.cycles:
            acc = c.evaluation.overall.accuracy if c.evaluation else None
            rep.log(f"cycle {c.cycle}: kept {c.ledger.kept} of {c.ledger.generated} generated; "
                    f"accuracy {acc if acc is None else f'{acc:.3f}'}")
        for w in result.warnings:
            rep.log(f"[yellow]warning: {w}[/]")
        typer.echo(f"run directory: {result.run_dir}")
        typer.echo(f"report: {result.report}")

    @app.command("report")
    def report_cmd(
        run_dir: Annotated[Path, typer.Argument(help="A run directory (runs/<name>).")],
        out: Annotated[Path | None, typer.Option("--out", help="Where to write the HTML (default RUN_DIR/report.html).")] = None,
    ) -> None:
        """Write the self-contained HTML report of a run."""
        from medgr2.plugins import get_registry
        from medgr2.report import write_report

        if not (run_dir / artifacts.MANIFEST).exists():
            fail(f"{run_dir} is not a run directory (no manifest.json): pass runs/<name>")
        typer.echo(f"report: {write_report(run_dir, registry=get_registry(), out=out)}")
