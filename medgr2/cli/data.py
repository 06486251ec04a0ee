"""``medgr2 data``: inspect a dataset source, export VQA sets in the OmniMedVQA layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medgr2.cli.common import JsonOpt, fail, print_json

SourceOpt = Annotated[
    str, typer.Option("--source", help="Registered dataset source (see `medgr2 plugins list`).")
]
OptOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--opt",
        help="Source option key=value (YAML value; dotted keys nest), e.g. --opt root=data/ham (repeatable).",
    ),
]
GeneratorOpt = Annotated[
    str | None,
    typer.Option(
        "--generator", help="Also build questions from the items with this generator (e.g. labels)."
    ),
]
GenOptOpt = Annotated[
    list[str] | None, typer.Option("--gen-opt", help="Generator option key=value (repeatable).")
]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Only this split: train, val or test.")]


def parse_opts(pairs: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` → ``{"a": 1, "b": {"c": "x"}}`` (values parsed as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            fail(f"option {pair!r} must look like key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                fail(f"option {pair!r} conflicts with an earlier value of {p!r}")
        node[leaf] = value
    return out


def _load(
    source: str, opts: list[str] | None, generator: str | None, gen_opts: list[str] | None, split: str | None
) -> tuple[Any, list[Any]]:
    """Load the source (and generate questions); exits with a clear message on bad input."""
    from medgr2.interfaces import SeedSet, StageContext
    from medgr2.plugins import get_registry
    from medgr2.registry import RegistryError
    from medgr2.stages.data import load_seed

    if split not in (None, "train", "val", "test"):
        fail(f"--split must be train, val or test, not {split!r}")
    registry = get_registry()
    try:
        seed = load_seed([{"name": source, "options": parse_opts(opts)}], registry)
        if split:
            seed = SeedSet(
                items=[i for i in seed.items if i.split == split],
                samples=[s for s in seed.samples if s.split == split],
                rejects=seed.rejects,
            )
        generated: list[Any] = []
        if generator:
            import tempfile

            gen = registry.create("generator", generator, parse_opts(gen_opts))
            with tempfile.TemporaryDirectory() as work:
                generated = list(
                    gen.generate(
                        list(seed.items), StageContext(work_dir=Path(work), registry=registry)
                    ).samples
                )
    except (RegistryError, FileNotFoundError, ValueError, KeyError) as exc:
        fail(str(exc))
    return seed, generated


def inspect_cmd(
    source: SourceOpt,
    opt: OptOpt = None,
    generator: GeneratorOpt = None,
    gen_opt: GenOptOpt = None,
    split: SplitOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Count a source's items/samples per split, modality, dataset, class and question type, plus rejects."""
    from medgr2.stages.data import summarize

    seed, generated = _load(source, opt, generator, gen_opt, split)
    summary = summarize(seed, generated)
    if as_json:
        print_json(summary)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{source}[/]: {summary['total']} images/records, {summary['samples']} VQA samples, "
        f"{summary['subjects']} subjects, {summary['rejects']} rejects"
    )
    for key in ("by_split", "by_modality", "by_dataset", "by_question_type", "by_class", "rejects_by_reason"):
        counts = summary[key]
        if not counts:
            continue
        table = Table(title=key.replace("_", " "), title_justify="left")
        table.add_column("value")
        table.add_column("count", justify="right")
        for k, v in list(counts.items())[:30]:
            table.add_row(str(k), str(v))
        console.print(table)
    for r in list(seed.rejects)[:10]:
        console.print(f"[yellow]reject[/] {r.id}: {r.reason} {r.detail}", highlight=False, soft_wrap=True)
    if len(seed.rejects) > 10:
        console.print(f"... and {len(seed.rejects) - 10} more rejects (--json for counts by reason)")


def export_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the export into.")],
    source: SourceOpt,
    opt: OptOpt = None,
    generator: GeneratorOpt = None,
    gen_opt: GenOptOpt = None,
    split: SplitOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="Output layout (only: omnimedvqa).")] = "omnimedvqa",
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Write every sample under this dataset name.")
    ] = None,
) -> None:
    """Write a source's VQA samples (plus generated ones) in the official OmniMedVQA layout."""
    from medgr2.plugins import get_registry
    from medgr2.stages.data import export_omnimedvqa

    if fmt != "omnimedvqa":
        fail(f"unknown export format {fmt!r}: only 'omnimedvqa' is supported")
    seed, generated = _load(source, opt, generator, gen_opt, split)
    samples = [*seed.samples, *generated]
    if not samples:
        fail(
            f"source {source!r} gave no VQA samples: add --generator labels to build questions from its items"
        )
    result = export_omnimedvqa(samples, out_dir, get_registry(), dataset=dataset)
    print_json(
        {
            "out_dir": str(result.root),
            "samples": result.samples,
            "images": result.images,
            "files": [str(p) for p in result.files],
            "rejects": len(result.rejects),
        }
    )


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    group = typer.Typer(
        name="data", help="Inspect dataset sources and export VQA sets.", no_args_is_help=True
    )
    group.command("inspect")(inspect_cmd)
    group.command("export")(export_cmd)
    app.add_typer(group, name="data")
