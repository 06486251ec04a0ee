"""``medgr2 data``: inspect a dataset source; export VQA sets (OmniMedVQA layout or a Hugging Face dataset)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medgr2 import artifacts
from medgr2.commands import JsonOpt, fail, print_json

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
    from medgr2.stages.seed import load_seed

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
    from medgr2.stages.seed import summarize

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


def _run_samples(run: Path, set_name: str, cycle: int | None) -> tuple[list[Any], dict[str, Any]]:
    """A run's sample set and the facts its dataset card states (run, set, filters, funnel)."""
    from medgr2.data import VQASample
    from medgr2.hub import run_config, run_set_path
    from medgr2.store import read_jsonl

    try:
        path = run_set_path(run, set_name, cycle)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    facts: dict[str, Any] = {"run": run.name, "set": set_name, "source_file": str(path),
                             "title": f"MedGR2 {set_name} samples of run {run.name}"}
    config = run_config(run)
    if set_name in ("kept", "dgen") and isinstance(config.get("filters"), dict):
        facts["filters"] = config["filters"].get("steps", config["filters"])
    funnel = path.parent / artifacts.FUNNEL
    if set_name == "kept" and funnel.is_file():
        import json

        facts["funnel"] = json.loads(funnel.read_text(encoding="utf-8"))
    return read_jsonl(path, VQASample), facts


def export_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the export into.")],
    source: Annotated[str | None, typer.Option(
        "--source", help="Registered dataset source (see `medgr2 plugins list`).")] = None,
    opt: OptOpt = None,
    generator: GeneratorOpt = None,
    gen_opt: GenOptOpt = None,
    split: SplitOpt = None,
    run: Annotated[Path | None, typer.Option("--run", help="A run folder (runs/NAME): export one of its sets.")]
    = None,
    set_name: Annotated[str, typer.Option(
        "--set", help="With --run: seed, eval, generated, scored, kept or dgen.")] = "kept",
    cycle: Annotated[int | None, typer.Option(
        "--cycle", help="With --run: the cycle (default: the last one that has the set).")] = None,
    samples_file: Annotated[Path | None, typer.Option(
        "--samples", help="A JSONL file of VQASample (any set a run or `medgr2 generate` wrote).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", help="omnimedvqa (the official JSON layout) or parquet (a Hugging Face dataset).")]
    = "omnimedvqa",
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="omnimedvqa: write every sample under this dataset name.")
    ] = None,
    hf_split: Annotated[str | None, typer.Option(
        "--hf-split", help="parquet: the split name of the files (default: test for the eval set, else train).")]
    = None,
    licence: Annotated[list[str] | None, typer.Option(
        "--licence", help="parquet: SOURCE=LICENCE for the dataset card (repeatable).")] = None,
    push_to_hub: Annotated[str | None, typer.Option(
        "--push-to-hub", help="parquet: also upload the folder to this Hub dataset repo (owner/name).")] = None,
    public: Annotated[bool, typer.Option("--public", help="With --push-to-hub: a public repo (default private).")]
    = False,
) -> None:
    """Export VQA samples: a source's (plus generated ones), a run's set or a samples file.

    ``--format omnimedvqa`` writes the official OmniMedVQA layout; ``--format parquet`` writes a
    Hugging Face dataset (Parquet shards with an ``image`` column decoded by the image loaders, and a
    dataset card), which ``datasets.load_dataset("parquet", data_files=...)`` reads.
    """
    from medgr2.plugins import get_registry

    if fmt not in ("omnimedvqa", "parquet"):
        fail(f"unknown export format {fmt!r}: use omnimedvqa or parquet")
    given = [name for name, value in (("--source", source), ("--run", run), ("--samples", samples_file))
             if value is not None]
    if len(given) != 1:
        fail("give exactly one of --source NAME, --run RUN_DIR or --samples FILE.jsonl"
             + (f" (got {', '.join(given)})" if given else ""))
    if push_to_hub and fmt != "parquet":
        fail("--push-to-hub needs --format parquet")
    facts: dict[str, Any] = {}
    if run is not None:
        samples, facts = _run_samples(run, set_name, cycle)
    elif samples_file is not None:
        from medgr2.data import VQASample
        from medgr2.store import read_jsonl

        if not samples_file.is_file():
            fail(f"--samples {samples_file} does not exist")
        try:
            samples = read_jsonl(samples_file, VQASample)
        except ValueError as exc:
            fail(f"--samples {samples_file} is not a JSONL file of VQASample: {exc}")
        facts = {"source_file": str(samples_file), "title": f"MedGR2 samples from {samples_file.name}"}
    else:
        seed, generated = _load(source, opt, generator, gen_opt, split)  # type: ignore[arg-type]
        samples = [*seed.samples, *generated]
        facts = {"title": f"MedGR2 samples of source {source}"}
    if split and source is None:
        samples = [s for s in samples if s.split == split]
    if not samples:
        hint = ": add --generator labels to build questions from its items" if source else ""
        fail(f"no VQA samples to export{hint}")
    if fmt == "omnimedvqa":
        from medgr2.stages.seed import export_omnimedvqa

        result = export_omnimedvqa(samples, out_dir, get_registry(), dataset=dataset)
        print_json({"out_dir": str(result.root), "samples": result.samples, "images": result.images,
                    "files": [str(p) for p in result.files], "rejects": len(result.rejects)})
        return
    from medgr2.hub import export_parquet, push_dataset_to_hub

    licences = {}
    for pair in licence or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            fail(f"--licence {pair!r} must look like SOURCE=LICENCE")
        licences[key.strip()] = value.strip()
    split_name = hf_split or ("test" if run is not None and set_name == "eval" else "train")
    try:
        exported = export_parquet(samples, out_dir, get_registry(), split=split_name, card=facts,
                                  licences=licences)
    except (ValueError, ImportError) as exc:
        fail(str(exc))
    summary: dict[str, Any] = {"out_dir": str(exported.root), "samples": exported.samples,
                               "images_decoded": exported.images_decoded, "by_loader": exported.by_loader,
                               "files": [str(p) for p in exported.files], "card": str(exported.card)}
    if push_to_hub:
        try:
            summary["hub_url"] = push_dataset_to_hub(exported.root, push_to_hub, private=not public)
        except (OSError, ValueError) as exc:  # the Hub client's HTTP, auth and offline errors
            fail(f"--push-to-hub {push_to_hub} failed: {exc} (log in with `huggingface-cli login` or set HF_TOKEN)")
    print_json(summary)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    group = typer.Typer(
        name="data", help="Inspect dataset sources and export VQA sets.", no_args_is_help=True
    )
    group.command("inspect")(inspect_cmd)
    group.command("export")(export_cmd)
    app.add_typer(group, name="data")
