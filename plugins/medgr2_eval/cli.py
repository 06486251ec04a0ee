"""``medgr2 eval``: score predictions under a named protocol, run the evaluator, build the studies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medgr2.commands import ConfigArg, JsonOpt, SetOpt, fail, print_json

ScorerOpt = Annotated[str, typer.Option("--scorer", help="Scoring protocol (see `medgr2 eval scorers`).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output folder.")]
ByOpt = Annotated[str, typer.Option("--by", help="Group by modality or question_type.")]
EvalSetOpt = Annotated[Path, typer.Option("--eval", help="VQASample JSONL to evaluate on.")]
BaseModelOpt = Annotated[Path, typer.Option("--model", help="Base policy folder.")]
TrainerOpt = Annotated[str, typer.Option("--trainer", help="Which policy trainer of the config: sft or grpo.")]


def _console() -> Any:
    from rich.console import Console

    return Console()


def _print_report(report: Any, out: Path | None) -> None:
    from rich.markdown import Markdown

    from medgr2_eval.report import report_markdown

    _console().print(Markdown(report_markdown(report)))
    if out is not None:
        _console().print(f"[dim]wrote {out}/report.json, {out}/report.md[/]")


def _warn_about_inputs(report: Any) -> None:
    """Tell (on stderr) when options were missing or the ground truth is not among them."""
    from rich.console import Console

    err = Console(stderr=True)
    meta = report.meta
    if meta.get("n_without_options"):
        err.print(
            f"[yellow]warning:[/] {meta['n_without_options']} prediction(s) have no options and none could be "
            "parsed from the question: add an 'options' list to those records"
        )
    if meta.get("n_gt_not_an_option"):
        err.print(
            f"[yellow]warning:[/] {meta['n_gt_not_an_option']} prediction(s) have a gt_answer that is none of "
            "their options: check the options (or the question text they were parsed from)"
        )


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
        rows = [
            {
                "name": n,
                "plugin": registry.entry("scorer", n).plugin,
                "rule": source_rule(registry.get("scorer", n)),
            }
            for n in registry.names("scorer")
        ]
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
        predictions: Annotated[
            Path,
            typer.Option(
                "--predictions",
                help="JSONL with question, gt_answer, "
                "model_answer (optional: options, question_id, modality, dataset).",
            ),
        ],
        scorer: ScorerOpt = "medgr2",
        out: Annotated[
            Path | None, typer.Option("--out", help="Also write report.json/report.md here.")
        ] = None,
        bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% CIs (0: none).")] = 1000,
        seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
        per_item: Annotated[
            Path | None,
            typer.Option(
                "--per-item",
                help="Also write each item's extracted answer and verdict here (JSONL), to diff protocols.",
            ),
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Score a predictions file under one protocol: accuracy (invalid counted wrong and skipped),
        per-group breakdowns, macro F1, balanced accuracy, AUROC (when option scores exist), CIs."""
        from medgr2.registry import RegistryError
        from medgr2_eval.prediction_files import score_predictions
        from medgr2_eval.report import summary_json, write_report
        from medgr2_eval.prediction_files import PredictionsFileError, read_predictions

        try:
            preds = read_predictions(predictions)
            report = score_predictions(preds, scorer, bootstrap=bootstrap, seed=seed, per_item=per_item)
        except (PredictionsFileError, RegistryError) as e:
            fail(str(e))
        if out is not None:
            write_report(report, out)
        _warn_about_inputs(report)
        if as_json:
            print_json(summary_json(report))
        else:
            _print_report(report, out)

    @group.command("protocols")
    def protocols(
        predictions: Annotated[
            Path, typer.Option("--predictions", help="Predictions JSONL (as for `eval score`).")
        ],
        bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% CIs (0: none).")] = 1000,
        as_json: JsonOpt = False,
    ) -> None:
        """Score one predictions file under every registered protocol, side by side (the protocol gap)."""
        from medgr2.plugins import get_registry
        from medgr2_eval.prediction_files import score_predictions
        from medgr2_eval.prediction_files import PredictionsFileError, read_predictions

        try:
            preds = read_predictions(predictions)
        except PredictionsFileError as e:
            fail(str(e))
        registry = get_registry()
        rows = []
        for name in registry.names("scorer"):
            o = score_predictions(preds, name, registry=registry, bootstrap=bootstrap).overall
            rows.append(
                {
                    "scorer": name,
                    "n": o.n,
                    "accuracy": o.accuracy,
                    "ci95": o.ci95,
                    "accuracy_valid_only": o.accuracy_valid_only,
                    "invalid": o.invalid,
                }
            )
        if as_json:
            print_json(rows)
            return
        from rich.table import Table

        table = Table("scorer", "n", "accuracy %", "95% CI", "valid-only %", "invalid")
        for r in rows:
            ci = "—" if r["ci95"] is None else f"{100 * r['ci95'][0]:.1f}–{100 * r['ci95'][1]:.1f}"
            valid = "—" if r["accuracy_valid_only"] is None else f"{100 * r['accuracy_valid_only']:.1f}"
            table.add_row(
                r["scorer"], str(r["n"]), f"{100 * r['accuracy']:.1f}", ci, valid, str(r["invalid"])
            )
        _console().print(table)

    @group.command("run")
    def run(
        config: ConfigArg = None,
        model: Annotated[Path, typer.Option("--model", help="Policy model folder.")] = ...,  # type: ignore[assignment]
        out: OutOpt = ...,  # type: ignore[assignment]
        samples: Annotated[
            Path | None, typer.Option("--samples", help="VQASample JSONL to evaluate.")
        ] = None,
        source: Annotated[
            str | None, typer.Option("--source", help="A dataset source's ready-made VQA samples.")
        ] = None,
        split: Annotated[
            str, typer.Option("--split", help="With --source: test, val, train or all.")
        ] = "test",
        opt: Annotated[
            list[str] | None, typer.Option("--opt", help="Source option key=value (repeatable).")
        ] = None,
        scorer: Annotated[
            str | None, typer.Option("--scorer", help="Scorer; default: evaluation.scorer.")
        ] = None,
        limit: Annotated[
            int | None, typer.Option("--limit", help="Evaluate at most this many samples.")
        ] = None,
        overrides: SetOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run the configured evaluator (default `vqa`) over a VQA set with the policy at --model."""
        from medgr2.commands import load_run_config, reporter
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
                fail(
                    "no VQA samples to evaluate (the source holds no ready-made samples in that split; "
                    "try --split all)"
                )
            items = items[:limit] if limit else items
            spec = cfg.evaluation.evaluator
            if spec is None:
                fail("evaluation.evaluator is null in the config: nothing to run")
            evaluator = registry.create("evaluator", spec.name, spec.options)
            ctx = StageContext(
                work_dir=out,
                seed=cfg.seed,
                reporter=reporter(as_json),
                registry=registry,
                answer_format=cfg.policy.answer_format,
            )
            report = evaluate(evaluator, items, model, out, ctx, scorer=scorer or cfg.evaluation.scorer)
        except (RegistryError, ValueError) as e:
            fail(str(e))
        if as_json:
            print_json(summary_json(report))
        else:
            _print_report(report, out)

    _register_studies(group)


def _read_preds(path: Path) -> Any:
    from medgr2_eval.prediction_files import PredictionsFileError, read_predictions

    try:
        return read_predictions(path)
    except PredictionsFileError as e:
        fail(str(e))


def _read_samples(path: Path, what: str) -> Any:
    from medgr2.data import VQASample
    from medgr2.store import read_jsonl

    if not path.is_file():
        fail(f"{what} file {str(path)!r} does not exist (JSONL of VQASample records)")
    samples = read_jsonl(path, VQASample)
    if not samples:
        fail(f"{what} file {str(path)!r} holds no samples")
    return samples


def _study_components(config: Path | None, overrides: list[str] | None, trainer: str,
                      out: Path) -> tuple[Any, Any, Any, Any]:
    """(config, trainer, evaluator, context) for a study runner: the components come from the run
    config (``policy.<trainer>``, ``evaluation.evaluator``), the context works in ``out``."""
    from medgr2.commands import load_run_config, reporter
    from medgr2.interfaces import StageContext
    from medgr2.plugins import get_registry

    cfg = load_run_config(config, overrides)
    spec = getattr(cfg.policy, trainer, None)
    if spec is None or cfg.evaluation.evaluator is None:
        fail(f"the config has no policy.{trainer} trainer or no evaluation.evaluator")
    registry = get_registry()
    ev = cfg.evaluation.evaluator
    ctx = StageContext(work_dir=out, seed=cfg.seed, reporter=reporter(), registry=registry,
                       answer_format=cfg.policy.answer_format)
    return (
        cfg,
        registry.create("trainer", spec.name, spec.options),
        registry.create("evaluator", ev.name, ev.options),
        ctx,
    )


def _register_studies(group: typer.Typer) -> None:
    """The studies: builders from prediction files / results, and runners over registered components."""

    @group.command("transfer")
    def transfer(
        pred: Annotated[
            list[str],
            typer.Option(
                "--pred",
                help="TRAIN_GROUP=predictions.jsonl of the policy trained on that group (repeatable).",
            ),
        ],
        out: OutOpt,
        by: ByOpt = "modality",
        scorer: ScorerOpt = "medgr2",
    ) -> None:
        """Cross-group transfer table + heatmap (rows: trained on, columns: evaluated on)."""
        from medgr2_eval.study_tables import transfer_matrix, write_transfer

        sets = {}
        for item in pred:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                fail(f"--pred {item!r}: write TRAIN_GROUP=path/to/predictions.jsonl")
            sets[name] = _read_preds(Path(path))
        try:
            paths = write_transfer(transfer_matrix(sets, by, scorer), out)
        except ValueError as e:
            fail(str(e))
        _console().print("\n".join(f"wrote {p}" for p in paths))

    @group.command("transitions")
    def transitions(
        before: Annotated[Path, typer.Option("--before", help="Predictions of the earlier/baseline policy.")],
        after: Annotated[
            Path, typer.Option("--after", help="Predictions of the later policy (same questions).")
        ],
        out: OutOpt,
        by: ByOpt = "modality",
        scorer: ScorerOpt = "medgr2",
    ) -> None:
        """Head-to-head error transitions (c->c, w->c, c->w, w->w) per group; stacked bars."""
        from medgr2_eval.study_tables import error_transitions, write_transitions

        try:
            table = error_transitions(
                _read_preds(before),
                _read_preds(after),
                by,
                scorer,
                names=(before.parent.name or before.stem, after.parent.name or after.stem),
            )
            paths = write_transitions(table, out)
        except ValueError as e:
            fail(str(e))
        _console().print("\n".join(f"wrote {p}" for p in paths))

    @group.command("efficiency")
    def efficiency(
        results: Annotated[
            Path, typer.Option("--results", help="JSONL rows {method, size, seed, accuracy}.")
        ],
        out: OutOpt,
    ) -> None:
        """Data-efficiency curves (TopK vs RandK, with the unfiltered baseline) with spread over seeds."""
        from medgr2.store import read_jsonl
        from medgr2_eval.study_tables import efficiency_curves, write_efficiency

        if not results.is_file():
            fail(f"results file {str(results)!r} does not exist")
        try:
            paths = write_efficiency(efficiency_curves(read_jsonl(results)), out)
        except ValueError as e:
            fail(str(e))
        _console().print("\n".join(f"wrote {p}" for p in paths))

    @group.command("transfer-run")
    def transfer_run(
        config: ConfigArg = None,
        train: Annotated[Path, typer.Option("--train", help="VQASample JSONL to train on.")] = ...,  # type: ignore[assignment]
        eval_set: EvalSetOpt = ...,  # type: ignore[assignment]
        model: BaseModelOpt = ...,  # type: ignore[assignment]
        out: OutOpt = ...,  # type: ignore[assignment]
        by: ByOpt = "modality",
        trainer: TrainerOpt = "sft",
        overrides: SetOpt = None,
    ) -> None:
        """Train one policy per group (config's trainer), evaluate each on every group, write the heatmap."""
        from medgr2_eval.study_tables import write_transfer
        from medgr2_eval.study_cells import run_transfer

        cfg, tr, ev, ctx = _study_components(config, overrides, trainer, out)
        try:
            table = run_transfer(
                _read_samples(train, "--train"),
                _read_samples(eval_set, "--eval"),
                by,
                tr,
                ev,
                model,
                out / "cells",
                ctx,
                cfg.evaluation.scorer,
            )
        except ValueError as e:
            fail(str(e))
        _console().print("\n".join(f"wrote {p}" for p in write_transfer(table, out)))

    @group.command("efficiency-run")
    def efficiency_run(
        config: ConfigArg = None,
        scored: Annotated[
            Path, typer.Option("--scored", help="Reward-scored VQASample JSONL to select from.")
        ] = ...,  # type: ignore[assignment]
        eval_set: EvalSetOpt = ...,  # type: ignore[assignment]
        model: BaseModelOpt = ...,  # type: ignore[assignment]
        out: OutOpt = ...,  # type: ignore[assignment]
        sizes: Annotated[list[int], typer.Option("--size", help="Training-set size k (repeatable).")] = ...,  # type: ignore[assignment]
        seeds: Annotated[
            list[int] | None, typer.Option("--seed", help="Seed (repeatable; default 0 1 2).")
        ] = None,
        full: Annotated[
            bool, typer.Option(help="Also train on every scored sample (unfiltered baseline).")
        ] = True,
        trainer: TrainerOpt = "sft",
        overrides: SetOpt = None,
    ) -> None:
        """TopK vs RandK (and the full set) over sizes and seeds; writes results.jsonl and the curves."""
        from medgr2.store import write_jsonl
        from medgr2_eval.study_tables import efficiency_curves, write_efficiency
        from medgr2_eval.study_cells import run_efficiency

        cfg, tr, ev, ctx = _study_components(config, overrides, trainer, out)
        try:
            rows = run_efficiency(
                _read_samples(scored, "--scored"),
                _read_samples(eval_set, "--eval"),
                sizes,
                seeds or [0, 1, 2],
                tr,
                ev,
                model,
                out / "cells",
                ctx,
                registry=ctx.registry,
                scorer=cfg.evaluation.scorer,
                full=full,
            )
        except ValueError as e:
            fail(str(e))
        write_jsonl(out / "results.jsonl", rows)
        _console().print("\n".join(f"wrote {p}" for p in write_efficiency(efficiency_curves(rows), out)))
