"""``medgr2 eval``: score predictions under a named protocol, run the evaluator, build the studies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medgr2.cli.common import ConfigArg, JsonOpt, SetOpt, fail, print_json

ScorerOpt = Annotated[str, typer.Option("--scorer", help="Scoring protocol (see `medgr2 eval scorers`).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output folder.")]


def _console() -> Any:
    from rich.console import Console

    return Console()


def _print_report(report: Any, out: Path | None) -> None:
    from rich.markdown import Markdown

    from medgr2_eval.report import report_markdown

    _console().print(Markdown(report_markdown(report)))
    if out is not None:
        _console().print(f"[dim]wrote {out}/report.json, {out}/report.md[/]")


def _parse_opts(items: list[str] | None) -> dict[str, Any]:
    from medgr2.config import ConfigError, parse_override

    out: dict[str, Any] = {}
    for item in items or []:
        try:
            keys, value = parse_override(item)
        except ConfigError as e:
            fail(str(e))
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return out


def register(app: typer.Typer) -> None:
    """Add ``medgr2 eval ...`` to ``app``."""
    group = typer.Typer(help="Evaluate policies: scoring protocols, metrics, studies.", no_args_is_help=True)
    app.add_typer(group, name="eval")

    @group.command("scorers")
    def scorers(as_json: JsonOpt = False) -> None:
        """List the scoring protocols with the published rule each one reproduces."""
        from medgr2.plugins import get_registry
        from medgr2_eval.scorers import source_rule

        registry = get_registry()
        rows = [{"name": n, "plugin": registry.entry("scorer", n).plugin,
                 "rule": source_rule(registry.get("scorer", n))} for n in registry.names("scorer")]
        if as_json:
            print_json(rows)
            return
        from rich.table import Table

        table = Table("scorer", "plugin", "rule (source)")
        for r in rows:
            table.add_row(r["name"], r["plugin"], r["rule"])
        _console().print(table)

    @group.command("score")
    def score(
        predictions: Annotated[Path, typer.Option("--predictions", help="JSONL with question, gt_answer, "
                                                  "model_answer (optional: options, question_id, modality, dataset).")],
        scorer: ScorerOpt = "medgr2",
        out: Annotated[Path | None, typer.Option("--out", help="Also write report.json/report.md here.")] = None,
        bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% CIs (0: none).")] = 1000,
        seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
        as_json: JsonOpt = False,
    ) -> None:
        """Score a predictions file under one protocol: accuracy (invalid counted wrong and skipped),
        per-group breakdowns, macro F1, balanced accuracy, AUROC (when option scores exist), CIs."""
        from medgr2.registry import RegistryError
        from medgr2.stages.evaluate import score_predictions
        from medgr2_eval.report import summary_json, write_report
        from medgr2_eval.scoring import PredictionsFileError, read_predictions

        try:
            preds = read_predictions(predictions)
            report = score_predictions(preds, scorer, bootstrap=bootstrap, seed=seed)
        except (PredictionsFileError, RegistryError) as e:
            fail(str(e))
        if out is not None:
            write_report(report, out)
        if as_json:
            print_json(summary_json(report))
        else:
            _print_report(report, out)

    @group.command("run")
    def run(
        config: ConfigArg = None,
        model: Annotated[Path, typer.Option("--model", help="Policy model folder.")] = ...,  # type: ignore[assignment]
        out: OutOpt = ...,  # type: ignore[assignment]
        samples: Annotated[Path | None, typer.Option("--samples", help="VQASample JSONL to evaluate.")] = None,
        source: Annotated[str | None, typer.Option("--source", help="A dataset source's ready-made VQA samples.")] = None,
        split: Annotated[str, typer.Option("--split", help="With --source: test, val, train or all.")] = "test",
        opt: Annotated[list[str] | None, typer.Option("--opt", help="Source option key=value (repeatable).")] = None,
        scorer: Annotated[str | None, typer.Option("--scorer", help="Scorer; default: evaluation.scorer.")] = None,
        limit: Annotated[int | None, typer.Option("--limit", help="Evaluate at most this many samples.")] = None,
        overrides: SetOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run the configured evaluator (default `vqa`) over a VQA set with the policy at --model."""
        from medgr2.cli.common import load_run_config, reporter
        from medgr2.data import VQASample
        from medgr2.interfaces import StageContext
        from medgr2.plugins import get_registry
        from medgr2.registry import RegistryError
        from medgr2.stages.evaluate import evaluate
        from medgr2.store import read_jsonl
        from medgr2_eval.report import summary_json

        if (samples is None) == (source is None):
            fail("give exactly one of --samples FILE or --source NAME")
        if not model.is_dir():
            fail(f"model folder {str(model)!r} does not exist (build a tiny one with `medgr2 models tiny`)")
        if config is None and not overrides:  # nothing user-given to validate: the defaults
            from medgr2.config import RunConfig

            cfg = RunConfig()
        else:
            cfg = load_run_config(config, overrides)
        registry = get_registry()
        try:
            if samples is not None:
                if not samples.is_file():
                    fail(f"samples file {str(samples)!r} does not exist")
                items = read_jsonl(samples, VQASample)
            else:
                if split not in ("test", "val", "train", "all"):
                    fail(f"--split {split!r}: use test, val, train or all")
                seed_set = registry.create("dataset", source, _parse_opts(opt)).load()
                items = [s for s in seed_set.samples if split == "all" or s.split == split]
            if not items:
                fail("no VQA samples to evaluate (the source holds no ready-made samples in that split; "
                     "try --split all)")
            items = items[:limit] if limit else items
            spec = cfg.evaluation.evaluator
            if spec is None:
                fail("evaluation.evaluator is null in the config: nothing to run")
            evaluator = registry.create("evaluator", spec.name, spec.options)
            ctx = StageContext(work_dir=out, seed=cfg.seed, reporter=reporter(as_json), registry=registry,
                               extras={"answer_format": cfg.policy.answer_format})
            report = evaluate(evaluator, items, model, out, ctx, scorer=scorer or cfg.evaluation.scorer)
        except (RegistryError, ValueError) as e:
            fail(str(e))
        if as_json:
            print_json(summary_json(report))
        else:
            _print_report(report, out)
