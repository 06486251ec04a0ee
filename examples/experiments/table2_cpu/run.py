"""The paper's Table 2 in miniature, on the real shared data, on CPU.

Conditions (each evaluated on the same held-out test split, grouped by patient/lesion/volume):

    zero-shot    the untrained tiny policy
    sft-raw      SFT on every generated sample (the generator is imperfect: ``--noise`` wrong answers)
    sft-randk    SFT on a random subset of the same size as top-K (the paper's RandK baseline)
    sft-topk     SFT on the top-K samples by R_φ
    sft-topk+grpo  the same, then GRPO with 0.8·R_φ + 0.2·match

R_φ is trained once per seed on clean label-built questions about *validation* images (a small
labelled set, disjoint from the generated training images), with the 4-grade scheme. Every condition
is a normal ``medgr2.run``; conditions of one seed share the stages they have in common through the
run store's resume (the first run's directory is copied and resumed with a changed config, so only
the stages the change affects are redone).

    python examples/experiments/table2_cpu/run.py --seeds 0 1 --out runs/table2
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

CONDITIONS = ("sft-raw", "sft-randk", "sft-topk", "sft-topk+grpo")
SOURCES = [
    {"name": "shared", "options": {"preset": "ham10000"}},
    {"name": "shared", "options": {"preset": "busi"}},
    {"name": "shared", "options": {"preset": "pneumoniamnist", "overrides": {"split_map": {"val": "test"}}}},
    {"name": "shared", "options": {"preset": "nct-crc"}},
    {"name": "shared", "options": {"preset": "totalsegmentator"}},
    {"name": "shared", "options": {"preset": "figure1"}},
]


def base_config(args: argparse.Namespace, seed: int, references: Path) -> dict[str, Any]:
    return {
        "name": "sft-raw", "runs_dir": str(args.out / f"seed-{seed}"), "seed": seed, "cycles": 1,
        "data": {"sources": SOURCES, "max_items": args.max_items},
        "generation": {"generator": {"name": "labels", "options": {
            "per_item": 2, "label_noise": args.noise, "question_types": ["modality_recognition", "disease_diagnosis",
                                                                          "anatomy_identification"]}}},
        "reward": {"model": {"name": "minilm", "options": {
                       "epochs": args.rm_epochs, "batch_size": 32, "max_train_examples": 2000, "freeze_layers": 4,
                       "lr": 1e-4, "head_lr": 3e-3, "threads": args.threads}},
                   "references": [{"format": "samples", "path": str(references)}],
                   "retrain_each_cycle": False},
        "filters": {"steps": []},
        "policy": {"answer_format": "text", "grpo": None,
                   "sft": {"name": "sft", "options": {"num_train_epochs": args.sft_epochs, "learning_rate": 0.002,
                                                      "per_device_train_batch_size": 16, "num_threads": args.threads,
                                                      "save_steps": 10_000}}},
        "evaluation": {"evaluator": {"name": "vqa", "options": {"batch_size": 32, "max_new_tokens": 24,
                                                                "num_threads": args.threads}},
                       "max_samples": args.eval_samples,
                       "question_builder": {"name": "labels", "options": {
                           "per_item": 1, "question_types": ["modality_recognition", "disease_diagnosis",
                                                             "anatomy_identification"]}}},
    }


def condition_overrides(name: str, fraction: float, threads: int) -> dict[str, Any]:
    """What each condition changes in the base config."""
    top = [{"name": "top_k", "options": {"fraction": fraction}}]
    rand = [{"name": "rand_k", "options": {"fraction": fraction}}]
    grpo = {"name": "grpo", "options": {"max_steps": 30, "num_generations": 4, "max_completion_length": 16,
                                        "per_device_train_batch_size": 8, "learning_rate": 2e-4,
                                        "num_threads": threads}}
    return {"sft-raw": {}, "sft-randk": {"filters": {"steps": rand}}, "sft-topk": {"filters": {"steps": top}},
            "sft-topk+grpo": {"filters": {"steps": top}, "policy": {"grpo": grpo}}}[name]


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def reference_samples(args: argparse.Namespace, seed: int, registry: Any) -> Path:
    """Clean label-built questions about validation images: R_φ's small labelled set."""
    from medgr2.interfaces import StageContext
    from medgr2.stages.seed import load_seed
    from medgr2.store import write_jsonl

    path = args.out / f"seed-{seed}" / "rm-references.jsonl"
    if path.exists():
        return path
    seed_set = load_seed(SOURCES, registry)
    val = [i for i in seed_set.items if i.split == "val"]
    builder = registry.create("generator", "labels", {"per_item": 2, "seed": seed})
    ctx = StageContext(work_dir=path.parent / "rm-references", seed=seed, registry=registry)
    samples = list(builder.generate(val, ctx).samples)
    write_jsonl(path, samples)
    return path


def run_seed(args: argparse.Namespace, seed: int, registry: Any) -> dict[str, Any]:
    import medgr2
    from medgr2.progress import RichReporter

    refs = reference_samples(args, seed, registry)
    base = base_config(args, seed, refs)
    results: dict[str, Any] = {}
    first_dir = Path(base["runs_dir"]) / CONDITIONS[0]
    for name in args.conditions:
        cfg = merge(base, condition_overrides(name, args.fraction, args.threads))
        cfg["name"] = name.replace("+", "-")
        run_dir = Path(base["runs_dir"]) / cfg["name"]
        if name != CONDITIONS[0] and first_dir.exists() and not run_dir.exists():
            shutil.copytree(first_dir, run_dir)  # shared stages are skipped by resume
        started = time.perf_counter()
        result = medgr2.run(cfg, registry=registry, reporter=RichReporter(), resume=True)
        report = result.cycles[-1].evaluation
        results[name] = {"report": report.model_dump(mode="json"), "wall_s": time.perf_counter() - started,
                         "kept": result.cycles[-1].ledger.get("kept")}
        if "zero-shot" not in results and result.baseline is not None:
            results["zero-shot"] = {"report": result.baseline.model_dump(mode="json"), "wall_s": 0.0, "kept": 0}
    return results


def _fmt(values: list[float]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}"


def table(all_results: dict[int, dict[str, Any]]) -> str:
    """Markdown: per condition, mean ± sd over seeds of accuracy, macro F1, the CI of the first seed,
    and accuracy per modality."""
    conds = ["zero-shot", *[c for c in CONDITIONS if any(c in r for r in all_results.values())]]
    modalities = sorted({m for r in all_results.values() for c in r.values() for m in c["report"]["by_modality"]})
    head = ["condition", "n", "accuracy", "95% CI (seed 1)", "macro F1", "invalid", "kept", *modalities]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in conds:
        rows = [r[c] for r in all_results.values() if c in r]
        if not rows:
            continue
        ov = [x["report"]["overall"] for x in rows]
        ci = ov[0].get("ci95")
        cells = [c, str(ov[0]["n"]), _fmt([o["accuracy"] for o in ov]),
                 f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "–", _fmt([o.get("macro_f1") for o in ov]),
                 _fmt([o["invalid"] / max(1, o["n"]) for o in ov]), str(rows[0]["kept"])]
        for m in modalities:
            cells.append(_fmt([x["report"]["by_modality"][m]["accuracy"] for x in rows
                               if m in x["report"]["by_modality"]]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    p.add_argument("--out", type=Path, default=Path("runs/table2"))
    p.add_argument("--max-items", type=int, default=1200, help="train images per run (seeded subsample)")
    p.add_argument("--noise", type=float, default=0.4, help="share of generated answers that are wrong")
    p.add_argument("--fraction", type=float, default=0.5, help="top-K / rand-K share kept")
    p.add_argument("--sft-epochs", type=float, default=4.0)
    p.add_argument("--rm-epochs", type=float, default=2.0)
    p.add_argument("--eval-samples", type=int, default=600)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest when seeds run in parallel)")
    p.add_argument("--combine", type=Path, nargs="+", help="only combine table2.json files of earlier runs "
                   "(e.g. one process per seed) into one table")
    args = p.parse_args()
    if args.combine:
        all_results = {}
        for path in args.combine:
            all_results.update({int(k): v for k, v in json.loads(path.read_text()).items()})
        write_table(args.out, all_results)
        return
    if args.conditions[0] != CONDITIONS[0]:
        args.conditions = [CONDITIONS[0], *[c for c in args.conditions if c != CONDITIONS[0]]]

    from medgr2.plugins import get_registry

    registry = get_registry()
    write_table(args.out, {seed: run_seed(args, seed, registry) for seed in args.seeds})


def write_table(out: Path, all_results: dict[int, dict[str, Any]]) -> None:
    md = table(all_results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table2.md").write_text(md + "\n", encoding="utf-8")
    (out / "table2.json").write_text(json.dumps(all_results, indent=1, default=str), encoding="utf-8")
    print(md)
    print(f"\nwritten: {out / 'table2.md'}, {out / 'table2.json'}")


if __name__ == "__main__":
    main()
