"""The paper's Table 2 and Figure 2 in miniature, on the real shared data, on CPU (issue 20).

Conditions (each a normal ``medgr2.run``, all evaluated on the same held-out split, grouped by
patient / lesion / volume):

    zero-shot         the untrained tiny policy (the first run's evaluate-baseline)
    sft-raw           SFT on every generated sample (after dedup / overlap)
    sft-randkK        SFT on a random K % of them, stratified like top-K (the paper's RandK baseline)
    sft-topkK         SFT on the K % with the highest R_φ reward, stratified (K = 25, 50 by default)
    sft-topkK+grpo    the same policy, then GRPO with 0.8·R_φ + 0.2·match (K = --grpo-k)

Everything not named here is the quickstart's default (``medgr2.config.RunConfig``): the imperfect
``labels`` generator with its defect model, R_φ (MiniLM + tiny CNN, graded set from the train
split), SFT (answer format ``text``), the guarded GRPO defaults, likelihood evaluation. The script
overrides only the data (the six shared presets), the sizes, the filter steps of each condition
and the threads. Conditions of one seed share stages through the run store's resume: a condition's
run folder starts as a copy of its parent's (sft-raw, or sft-topkK for +grpo), so only the stages
its change affects are redone.

Every policy is scored under both protocols: likelihood (the loop's own evaluation; OmniMedVQA's
protocol) and generation (the ``vqa`` evaluator in ``mode: generate``, unless ``--no-generate``).
Per seed it writes ``seed-N/table2.json`` (per-item correctness, defects, mix, stage times) and
``table2.md``; ``--combine`` pools seeds: mean ± sd, paired bootstrap CIs, ``figure2.png``.

    python examples/experiments/table2_cpu/run.py --seeds 0 --out runs/table2/s0
    python examples/experiments/table2_cpu/run.py --combine runs/table2/s*/table2.json --out runs/table2
    python examples/experiments/table2_cpu/run.py --smoke --seeds 0 --out /tmp/t2smoke   # ~3 min

``--split val`` evaluates on label-built questions about the validation images instead (for
choosing settings); the test split is then never read by any model.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

SOURCES = [
    {"name": "shared", "options": {"preset": "ham10000"}},
    {"name": "shared", "options": {"preset": "busi"}},
    # the file has train/val only: re-split every image into train/val/test (seeded, grouped by image)
    {"name": "shared", "options": {"preset": "pneumoniamnist", "overrides": {"use_source_splits": False}}},
    {"name": "shared", "options": {"preset": "nct-crc"}},
    {"name": "shared", "options": {"preset": "totalsegmentator"}},
    {"name": "shared", "options": {"preset": "figure1"}},
]
MODES = ("likelihood", "generate")
ANSWER_KINDS = ("wrong_confusable", "unanswerable", "bad_options", "label_noise")
"""Defects that change the SFT target or the question (``answer_format: text`` trains on ``class (B)``)."""
RATIONALE_KINDS = ("contradicting_rationale", "bad_rationale")
"""Defects only in the rationale: they test R_φ, the policy never trains on them."""
_COND = re.compile(r"^sft-(raw|topk|randk)(\d+)?(\+grpo)?$")

SMOKE = {"max_items": 40, "rm_items": 60, "sft_steps": 12, "grpo_steps": 2, "eval_samples": 40, "rm_max_examples": 160,
         "rm_epochs": 1.0, "bootstrap": 200}
"""The ``--smoke`` sizes: a few dozen items and steps, end to end in a few minutes."""


# ------------------------------------------------------------------ conditions and configs


def condition_names(ks: list[int], grpo_k: int | None) -> list[str]:
    """``sft-raw``, then rand-K / top-K for each K, then top-K+GRPO (zero-shot comes from the first run)."""
    names = ["sft-raw"]
    for k in ks:
        names += [f"sft-randk{k}", f"sft-topk{k}"]
    if grpo_k is not None:
        names.append(f"sft-topk{grpo_k}+grpo")
    return names


def parse_condition(name: str) -> tuple[str, int | None, bool]:
    """``sft-topk25+grpo`` → ("topk", 25, True); a clear error for anything else."""
    m = _COND.match(name)
    if not m or (m.group(1) == "raw") != (m.group(2) is None) or (m.group(2) and not 0 < int(m.group(2)) <= 100):
        raise ValueError(f"unknown condition {name!r}: use sft-raw, sft-topkK, sft-randkK or sft-topkK+grpo "
                         "with K a percentage in 1..100 (e.g. sft-topk25)")
    return m.group(1), int(m.group(2)) if m.group(2) else None, bool(m.group(3))


def parent_of(name: str) -> str | None:
    """The condition whose run folder this one starts from (its shared stages are then skipped)."""
    kind, _, grpo = parse_condition(name)
    if grpo:
        return name.removesuffix("+grpo")
    return None if kind == "raw" else "sft-raw"


def rm_references(args: argparse.Namespace, seed: int, registry: Any) -> Path:
    """R_φ's reference samples: label-built (clean) questions about ``--rm-items`` train images drawn at
    random from those the generator does *not* see, or with ``--rm-from generated`` from those it does
    (the quickstart builds them from every train image;
    the shared data has ~11,000, so its graded set would take minutes to calibrate)."""
    from medgr2.config import RunConfig
    from medgr2.interfaces import StageContext
    from medgr2.progress import SilentReporter
    from medgr2.stages.generate import select_items
    from medgr2.stages.seed import load_seed
    from medgr2.store import write_jsonl

    path = Path(args.out) / f"seed-{seed}" / "rm-references.jsonl"
    if path.exists():
        return path
    seed_set = load_seed(SOURCES, registry)
    generated = {i.id for i in select_items(seed_set, max_items=args.max_items, run_seed=seed)}
    if args.rm_from == "generated":  # as the quickstart: R_φ learns on the images the generator writes about
        pool = [i for i in seed_set.items if i.id in generated]
    else:
        pool = [i for i in seed_set.items if i.split == "train" and i.id not in generated]
    import random

    items = random.Random(seed).sample(pool, min(len(pool), args.rm_items))
    qb = RunConfig().evaluation.question_builder
    ctx = StageContext(work_dir=path.parent / "rm-references", seed=seed, registry=registry,
                       reporter=SilentReporter())
    samples = list(registry.create("generator", qb.name, qb.options).generate(items, ctx).samples)
    write_jsonl(path, samples)
    return path


def base_config(args: argparse.Namespace, seed: int, references: Path | None = None) -> dict[str, Any]:
    """The quickstart's defaults with the shared data, this experiment's sizes and threads."""
    from medgr2.config import RunConfig

    cfg = RunConfig().model_dump(mode="json")
    cfg.update(name="sft-raw", runs_dir=str(Path(args.out) / f"seed-{seed}"), seed=seed, cycles=1)
    cfg["data"].update(sources=json.loads(json.dumps(SOURCES)), max_items=args.max_items)
    gen = cfg["generation"]["generator"]["options"]
    if args.defects is not None:
        gen["defects"] = dict(args.defects)
    rm = cfg["reward"]["model"]["options"]
    rm["threads"] = args.threads
    if args.rm_max_examples:
        rm["max_train_examples"] = args.rm_max_examples
    if args.rm_epochs:
        rm["epochs"] = args.rm_epochs
    if references is not None:
        cfg["reward"]["grade_set"]["options"]["references"] = [{"format": "samples", "path": str(references)}]
    if args.rm_grading:
        grading = cfg["reward"]["grade_set"]["options"].setdefault("grading", {})
        grading.update(args.rm_grading)
    # reward-update runs after this cycle's evaluation: it cannot change any figure here
    cfg["reward"]["retrain_each_cycle"] = False
    sft = cfg["policy"]["sft"]["options"]
    sft.update(max_steps=args.sft_steps, num_threads=args.threads)
    cfg["policy"]["grpo"] = None  # only the +grpo conditions train GRPO
    ev = cfg["evaluation"]
    ev["max_samples"] = args.eval_samples
    ev["also"] = []  # generated answers are this script's own pass (--generate-for), not the loop's
    if args.split == "val":
        ev["evaluator"] = None  # nothing evaluates on test; the script evaluates on val itself
    else:
        ev["evaluator"]["options"].update(num_threads=args.threads, batch_size=16)
    return cfg


def grpo_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The quickstart's GRPO (guarded defaults, 0.8·R_φ + 0.2·match) with this run's steps and threads."""
    from medgr2.config import RunConfig

    spec = RunConfig().policy.grpo.model_dump(mode="json")
    spec["options"].update(max_steps=args.grpo_steps, num_threads=args.threads, **(args.grpo_options or {}))
    return spec


def condition_config(base: dict[str, Any], name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The base config with what condition ``name`` changes: the filter steps and GRPO.

    Every condition runs ``dedup`` and ``overlap`` first (the quickstart's steps), then the selection
    on what is left, so top-K and rand-K keep exactly as many samples, stratified the same way."""
    kind, k, grpo = parse_condition(name)
    cfg = json.loads(json.dumps(base))
    cfg["name"] = name.replace("+", "-")
    steps: list[dict[str, Any]] = [{"name": "dedup", "options": {}}, {"name": "overlap", "options": {}}]
    if kind != "raw":
        steps.append({"name": "top_k" if kind == "topk" else "rand_k",
                      "options": {"fraction": k / 100, "stratify_by": list(args.stratify)}})
    cfg["filters"]["steps"] = steps
    cfg["policy"]["grpo"] = grpo_spec(args) if grpo else None
    return cfg


# ------------------------------------------------------------------ one seed


def _executed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Wall seconds of the stages this run did (records that changed), by stage key."""
    return {k: float(r.get("outputs", {}).get("wall_s", 0.0)) for k, r in after.items() if before.get(k) != r}


def _manifest(run_dir: Path) -> dict[str, Any]:
    p = run_dir / "manifest.json"
    return json.loads(p.read_text())["stages"] if p.exists() else {}


def val_questions(args: argparse.Namespace, run_dir: Path, cfg: dict[str, Any], registry: Any) -> list[Any]:
    """Label-built questions about the validation images (``--split val``), capped like the test set."""
    from medgr2.data import SeedItem, VQASample
    from medgr2.interfaces import StageContext
    from medgr2.progress import SilentReporter
    from medgr2.store import read_jsonl, write_jsonl

    path = run_dir.parent / "val-questions.jsonl"
    if not path.exists():
        items = [i for i in read_jsonl(run_dir / "cycle-000" / "seed" / "items.jsonl", SeedItem) if i.split == "val"]
        qb = cfg["evaluation"]["question_builder"]
        ctx = StageContext(work_dir=path.parent / "val-questions", seed=cfg["seed"], registry=registry,
                           reporter=SilentReporter())
        samples = list(registry.create("generator", qb["name"], qb.get("options") or {}).generate(items, ctx).samples)
        import random

        if args.eval_samples and len(samples) > args.eval_samples:
            samples = random.Random(cfg["seed"]).sample(samples, args.eval_samples)
        write_jsonl(path, samples)
    return read_jsonl(path, VQASample)


def policy_stamp(policy: Path) -> str:
    """What identifies a trained policy for the evaluation cache: its path and its weight files' names,
    sizes and modification times (a policy retrained into the same folder gets a new stamp)."""
    files = sorted(Path(policy).glob("*.safetensors"))
    return "\n".join([str(policy)] + [f"{f.name} {f.stat().st_size} {f.stat().st_mtime_ns}" for f in files])


def evaluate_policy(policy: Path, samples: list[Any], mode: str, out_dir: Path, args: argparse.Namespace,
                    registry: Any, seed: int) -> tuple[list[bool], list[bool], dict[str, Any]]:
    """(correct, valid, overall metrics) of ``policy`` on ``samples`` under ``mode``; cached in ``out_dir``."""
    from medgr2.data import EvalReport, Prediction
    from medgr2.interfaces import StageContext
    from medgr2.progress import SilentReporter
    from medgr2.store import read_json, read_jsonl

    key, stamp = out_dir / "policy.txt", policy_stamp(policy)  # the cache holds this policy's results only
    if not (out_dir / "report.json").exists() or not key.exists() or key.read_text() != stamp:
        shutil.rmtree(out_dir, ignore_errors=True)
        options = {"mode": mode, "num_threads": args.threads, "batch_size": 16, "max_new_tokens": 24,
                   "bootstrap": 0}
        ev = registry.create("evaluator", "vqa", options)
        ctx = StageContext(work_dir=out_dir, seed=seed, registry=registry, reporter=SilentReporter(),
                           answer_format="text", scorer="medgr2")
        ev.evaluate(samples, policy, out_dir, ctx)
        key.write_text(stamp)
    preds = read_jsonl(out_dir / "predictions.jsonl", Prediction)
    correct, valid = per_item(preds, samples, registry)
    return correct, valid, read_json(out_dir / "report.json", EvalReport).overall.model_dump(mode="json")


def per_item(preds: list[Any], samples: list[Any], registry: Any) -> tuple[list[bool], list[bool]]:
    """Per-sample (correct, valid) under the medgr2 scorer, in the order of ``samples``."""
    from medgr2_eval.prediction_files import resolve_scorer, score_all

    by_id = {p.question_id: p for p in preds}
    missing = [s.id for s in samples if s.id not in by_id]
    if missing:
        raise RuntimeError(f"{len(missing)} evaluation samples have no prediction (e.g. {missing[0]}); "
                           "delete the evaluation folder and rerun")
    ordered = [by_id[s.id] for s in samples]
    verdicts = score_all(ordered, resolve_scorer("medgr2", registry)[1])
    return [bool(v.correct) for v in verdicts], [bool(v.valid) for v in verdicts]


def measure_defects(run_dirs: dict[str, Path], cfg: dict[str, Any], registry: Any, bootstrap: int,
                    seed: int) -> dict[str, Any]:
    """R_φ's AUROC per defect kind (real and image-swapped), and each condition's defect share after filtering."""
    from medgr2_eval.defects import defect_report, swap_images

    from medgr2.data import RewardInput, VQASample
    from medgr2.interfaces import StageContext
    from medgr2.progress import SilentReporter
    from medgr2.store import read_jsonl

    first = run_dirs["sft-raw"]
    scored = read_jsonl(first / "cycle-001" / "score" / "scored.jsonl", VQASample)
    kept = {c: read_jsonl(d / "cycle-001" / "filter" / "kept.jsonl", VQASample) for c, d in run_dirs.items()
            if "+grpo" not in c}
    full = defect_report(scored, None, bootstrap=bootstrap, seed=seed)
    after = {c: {k: v.get("share_after") for k, v in defect_report(scored, ks)["kinds"].items()} | {
        "n_kept": len(ks)} for c, ks in kept.items()}
    rm_spec = cfg["reward"]["model"]
    rm = registry.create("reward_model", rm_spec["name"], rm_spec["options"])
    rm.load(Path(json.loads((first / "manifest.json").read_text())["stages"]["cycle-000/reward-init"]
                 ["outputs"]["checkpoint"]))
    swapped = swap_images(scored, seed=seed)
    ctx = StageContext(work_dir=first.parent / "swap-score", seed=seed, registry=registry, reporter=SilentReporter())
    scores = rm.score([RewardInput.from_sample(s) for s in swapped], ctx)
    swap = defect_report(scored, None, scores={s.id: float(x) for s, x in zip(scored, scores, strict=True)})
    return {"report": full, "swapped_auroc": {k: v["auroc"] for k, v in swap["kinds"].items()}, "after": after}


def read_mix(run_dir: Path) -> dict[str, Any] | None:
    for name in ("mix-top_k.json", "mix-rand_k.json"):
        p = run_dir / "cycle-001" / "filter" / name
        if p.exists():
            return json.loads(p.read_text())
    return None


def run_seed(args: argparse.Namespace, seed: int, registry: Any) -> dict[str, Any]:
    """Every condition of one seed; returns the seed's per-item record (see :func:`write_seed`)."""
    import medgr2
    from medgr2.data import VQASample
    from medgr2.progress import RichReporter
    from medgr2.store import read_jsonl

    base = base_config(args, seed, rm_references(args, seed, registry))
    root = Path(base["runs_dir"])
    names = condition_names(args.ks, args.grpo_k) if args.conditions is None else \
        ["sft-raw", *[c for c in args.conditions if c != "sft-raw"]]
    def modes(cond: str) -> tuple[str, ...]:
        wanted = not args.no_generate and ("all" in args.generate_for or cond in args.generate_for)
        return MODES if wanted else ("likelihood",)

    out: dict[str, Any] = {"seed": seed, "split": args.split, "conditions": {}, "stage_s": {}}
    run_dirs: dict[str, Path] = {}
    samples: list[Any] = []
    base_policy: Path | None = None
    for name in names:
        cfg = condition_config(base, name, args)
        run_dir = root / cfg["name"]
        parent = parent_of(name)
        if parent and parent in run_dirs and not run_dir.exists():
            # the shared stages are skipped by resume; the parent's own extra evaluations stay behind
            shutil.copytree(run_dirs[parent], run_dir, ignore=shutil.ignore_patterns("table2-eval"))
        before = _manifest(run_dir)
        started = time.perf_counter()
        result = medgr2.run(cfg, registry=registry, reporter=RichReporter(), resume=True)
        run_dirs[name] = run_dir
        stages = _executed(before, _manifest(run_dir))
        policy = Path(result.cycles[-1].policy)
        if not samples:
            base_policy = Path(_manifest(run_dir)["cycle-000/policy-init"]["outputs"]["checkpoint"])
            samples = (read_jsonl(run_dir / "cycle-000" / "eval-set" / "samples.jsonl", VQASample)
                       if args.split == "test" else val_questions(args, run_dir, cfg, registry))
            out["questions"] = [{"id": s.id, "modality": s.modality.value, "question_type": s.question_type.value,
                                 "dataset": s.provenance.source_dataset, "chance": 1 / len(s.options)}
                                for s in samples]
            out["conditions"]["zero-shot"] = evaluate_all(
                base_policy, samples, modes("zero-shot"), root / "zero-shot", run_dir, True, args, registry, seed)
        t0 = time.perf_counter()
        rec = evaluate_all(policy, samples, modes(name), run_dir / "table2-eval", run_dir, False, args, registry,
                           seed)
        stages["table2-eval"] = round(time.perf_counter() - t0, 3)
        rec.update(kept=result.cycles[-1].ledger.kept, wall_s=round(time.perf_counter() - started, 1),
                   warnings=list(result.warnings), mix=read_mix(run_dir))
        out["conditions"][name] = rec
        out["stage_s"][name] = stages
    t0 = time.perf_counter()
    if not args.no_defects:
        out["defects"] = measure_defects(run_dirs, base, registry, args.bootstrap, seed)
    out["stage_s"]["defects"] = {"measure": round(time.perf_counter() - t0, 3)}
    return out


def evaluate_all(policy: Path, samples: list[Any], modes: tuple[str, ...], out_dir: Path, run_dir: Path,
                 baseline: bool, args: argparse.Namespace, registry: Any, seed: int) -> dict[str, Any]:
    """Per mode: per-item correctness and overall metrics. Likelihood on test reuses the loop's own evaluation."""
    from medgr2.data import Prediction
    from medgr2.store import read_jsonl

    rec: dict[str, Any] = {"correct": {}, "valid": {}, "overall": {}}
    for mode in modes:
        loop_dir = run_dir / "cycle-000" / "evaluate-baseline" if baseline else run_dir / "cycle-001" / "evaluate"
        if mode == "likelihood" and args.split == "test" and (loop_dir / "predictions.jsonl").exists():
            preds = read_jsonl(loop_dir / "predictions.jsonl", Prediction)
            correct, valid = per_item(preds, samples, registry)
            overall = json.loads((loop_dir / "report.json").read_text())["overall"]
        else:
            correct, valid, overall = evaluate_policy(policy, samples, mode, out_dir / mode, args, registry, seed)
        rec["correct"][mode] = [int(c) for c in correct]
        rec["valid"][mode] = [int(v) for v in valid]
        rec["overall"][mode] = {k: overall.get(k) for k in ("n", "accuracy", "ci95", "macro_f1", "invalid")}
    return rec


# ------------------------------------------------------------------ statistics over seeds


def accuracy(rec: dict[str, Any], mode: str, questions: list[dict[str, Any]], modality: str | None = None
             ) -> float | None:
    vals = [c for c, q in zip(rec["correct"].get(mode, []), questions) if modality in (None, q["modality"])]
    return sum(vals) / len(vals) if vals else None


def paired_bootstrap(seeds: list[dict[str, Any]], a: str, b: str, mode: str, modality: str | None = None,
                     resamples: int = 1000, rng_seed: int = 0) -> dict[str, Any] | None:
    """Mean of (a correct − b correct) over the test items of every seed, and its 95 % percentile CI
    from resampling the items *within each seed* (pooled over seeds). None when a condition is missing."""
    import numpy as np

    rng = np.random.default_rng(rng_seed)
    diffs = []
    for s in seeds:
        ca, cb = s["conditions"].get(a), s["conditions"].get(b)
        if not ca or not cb or mode not in ca["correct"] or mode not in cb["correct"]:
            return None
        keep = [modality in (None, q["modality"]) for q in s["questions"]]
        d = np.asarray(ca["correct"][mode], float) - np.asarray(cb["correct"][mode], float)
        if len(d) != len(keep):
            raise ValueError(f"seed {s['seed']}: {a} and the questions differ in length")
        d = d[np.asarray(keep, bool)]
        if len(d):
            diffs.append(d)
    if not diffs:
        return None
    n = sum(len(d) for d in diffs)
    total = np.zeros(resamples)
    for d in diffs:
        total += d[rng.integers(0, len(d), size=(resamples, len(d)))].sum(axis=1)
    lo, hi = np.percentile(total / n, [2.5, 97.5])
    return {"diff": float(sum(d.sum() for d in diffs) / n), "ci95": [float(lo), float(hi)], "n": int(n)}


def comparisons(conds: list[str]) -> list[tuple[str, str]]:
    """(a, b) pairs whose a − b the table reports: top-K − rand-K, top-K − raw, (top-K+GRPO) − top-K."""
    pairs = []
    for c in conds:
        kind, k, grpo = parse_condition(c) if c != "zero-shot" else ("", None, False)
        if kind == "topk" and not grpo:
            if f"sft-randk{k}" in conds:
                pairs.append((c, f"sft-randk{k}"))
            if "sft-raw" in conds:
                pairs.append((c, "sft-raw"))
        if grpo and c.removesuffix("+grpo") in conds:
            pairs.append((c, c.removesuffix("+grpo")))
    if "sft-raw" in conds:
        pairs.append(("sft-raw", "zero-shot"))
    return pairs


def _msd(values: list[float | None], pct: bool = False) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    f = 100.0 if pct else 1.0
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{f * vals[0]:.3f}" if not pct else f"{f * vals[0]:.1f}"
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}" if not pct else \
        f"{f * statistics.mean(vals):.1f} ± {f * statistics.stdev(vals):.1f}"


def ordered_conditions(seeds: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for s in seeds:
        seen += [c for c in s["conditions"] if c not in seen]
    return seen


def combine(seeds: list[dict[str, Any]], resamples: int = 1000) -> dict[str, Any]:
    """Per condition and mode: accuracy per seed (overall and per modality); the paired differences."""
    conds = ordered_conditions(seeds)
    modalities = sorted({q["modality"] for s in seeds for q in s["questions"]})
    modes = [m for m in MODES if any(m in c["correct"] for s in seeds for c in s["conditions"].values())]
    acc = {c: {m: {"overall": [accuracy(s["conditions"][c], m, s["questions"]) for s in seeds
                               if c in s["conditions"]],
                   **{mod: [accuracy(s["conditions"][c], m, s["questions"], mod) for s in seeds
                            if c in s["conditions"]] for mod in modalities}}
               for m in modes} for c in conds}
    diffs = {f"{a} − {b}": {m: {mod: paired_bootstrap(seeds, a, b, m, None if mod == "overall" else mod, resamples)
                                for mod in ["overall", *modalities]} for m in modes}
             for a, b in comparisons(conds)}
    chance = [statistics.mean(q["chance"] for q in s["questions"]) for s in seeds]
    return {"seeds": [s["seed"] for s in seeds], "conditions": conds, "modes": modes, "modalities": modalities,
            "accuracy": acc, "differences": diffs, "chance": statistics.mean(chance),
            "n_questions": [len(s["questions"]) for s in seeds]}


def figure2(summary: dict[str, Any], out: Path, mode: str = "likelihood") -> list[Path]:
    """Accuracy against K (100 % = raw) for top-K and rand-K: figure2.csv, and figure2.png with matplotlib."""
    ks = sorted({parse_condition(c)[1] for c in summary["conditions"] if c.startswith(("sft-topk", "sft-randk"))
                 and "+grpo" not in c} - {None})
    rows = []
    for kind in ("topk", "randk"):
        for k in [*ks, 100]:
            cond = "sft-raw" if k == 100 else f"sft-{kind}{k}"
            vals = [v for v in summary["accuracy"].get(cond, {}).get(mode, {}).get("overall", []) if v is not None]
            if vals:
                rows.append({"selection": kind, "K": k, "mean": statistics.mean(vals),
                             "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0, "seeds": len(vals)})
    written = [out / "figure2.csv"]
    with written[0].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["selection", "K", "mean", "sd", "seeds"])
        w.writeheader()
        w.writerows(rows)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for kind, label in (("topk", "top-K (R_φ)"), ("randk", "rand-K")):
        pts = [r for r in rows if r["selection"] == kind]
        ax.errorbar([r["K"] for r in pts], [r["mean"] for r in pts], yerr=[r["sd"] for r in pts], marker="o",
                    capsize=3, label=label)
    ax.axhline(summary["chance"], color="grey", ls=":", label="chance")
    ax.set_xlabel("K: % of generated samples kept (100 = raw)")
    ax.set_ylabel(f"test accuracy ({mode})")
    ax.set_title(f"Figure 2 in miniature ({len(summary['seeds'])} seed(s), mean ± sd)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "figure2.png", dpi=120)
    plt.close(fig)
    return [*written, out / "figure2.png"]


def _ci(d: dict[str, Any] | None) -> str:
    if d is None:
        return "–"
    return f"{100 * d['diff']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"


def markdown(seeds: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """table2.md: accuracy table, differences with CIs, defects and mix."""
    mods, modes = summary["modalities"], summary["modes"]
    lines = [(f"Seeds {summary['seeds']}, split `{seeds[0].get('split', 'test')}`, "
             f"{summary['n_questions']} questions per seed; chance {summary['chance']:.3f}. "
             "Accuracy in %, mean ± sd over seeds."), ""]
    head = ["condition", "kept", *[f"acc ({m})" for m in modes], "invalid (generate)",
            *[f"{m} (lik.)" for m in mods]]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in summary["conditions"]:
        recs = [s["conditions"][c] for s in seeds if c in s["conditions"]]
        inv = [1 - statistics.mean(r["valid"]["generate"]) for r in recs if r["valid"].get("generate")]
        cells = [c, str(recs[0].get("kept", "–") if c != "zero-shot" else "–"),
                 *[_msd(summary["accuracy"][c][m]["overall"], True) for m in modes], _msd(inv, True),
                 *[_msd(summary["accuracy"][c]["likelihood"][mod], True) for mod in mods]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", ("Differences in points, paired bootstrap over test items within each seed, pooled over seeds "
              "(95 % CI):"), ""]
    head = ["difference", "mode", "overall", *mods]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, by_mode in summary["differences"].items():
        for m in modes:
            lines.append("| " + " | ".join([name, m, *[_ci(by_mode[m][k]) for k in ["overall", *mods]]]) + " |")
    lines += ["", *defects_markdown(seeds), "", *mix_markdown(seeds)]
    return "\n".join(lines) + "\n"


def defects_markdown(seeds: list[dict[str, Any]]) -> list[str]:
    """R_φ's AUROC per defect kind (real / images swapped) and each kind's share before → after, per seed."""
    out = [("R_φ separating each defect kind from clean samples (AUROC, images swapped in brackets) and its "
           "share of the samples before → after each filter (%). Kinds that change the SFT target: "
           f"{', '.join(ANSWER_KINDS)}; rationale-only kinds (test R_φ only): {', '.join(RATIONALE_KINDS)}."), ""]
    for s in seeds:
        d = s.get("defects")
        if not d:
            continue
        kinds = list(d["report"]["kinds"])
        conds = [c for c in d["after"] if c != "sft-raw"]
        head = ["seed", "kind", "AUROC [swapped]", "share raw", *conds]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        groups = {"answer-changing": ANSWER_KINDS, "rationale-only": RATIONALE_KINDS}
        for k in kinds:
            r, sw = d["report"]["kinds"][k], d["swapped_auroc"].get(k)
            au = "–" if r["auroc"] is None else f"{r['auroc']:.3f}" + (f" [{sw:.3f}]" if sw is not None else "")
            out.append("| " + " | ".join([str(s["seed"]), k, au, f"{100 * r['share_before']:.1f}",
                                          *[_pct(d["after"][c].get(k)) for c in conds]]) + " |")
        for g, members in groups.items():
            before = sum(d["report"]["kinds"].get(k, {}).get("share_before", 0.0) for k in members)
            after = [sum(d["after"][c].get(k) or 0.0 for k in members) for c in conds]
            out.append("| " + " | ".join([str(s["seed"]), f"*{g}*", "", f"{100 * before:.1f}",
                                          *[_pct(a) for a in after]]) + " |")
        out.append("")
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def mix_markdown(seeds: list[dict[str, Any]]) -> list[str]:
    """The modality mix of the candidates and of each selection's kept set (seed by seed)."""
    out = ["Modality mix (%) before the selection and after it:", ""]
    for s in seeds:
        mixes = {c: r["mix"] for c, r in s["conditions"].items() if r.get("mix")}
        if not mixes:
            continue
        first = next(iter(mixes.values()))
        mods = sorted(first["by"]["modality"]["before"])
        head = ["seed", "set", "n", *mods]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        rows = [("candidates", first["in"], first["by"]["modality"]["before"])]
        rows += [(c, m["kept"], m["by"]["modality"]["after"]) for c, m in mixes.items()]
        for label, n, by in rows:
            out.append("| " + " | ".join([str(s["seed"]), label, str(n),
                                          *[f"{100 * by.get(m, 0) / max(n, 1):.1f}" for m in mods]]) + " |")
        out.append("")
    return out


def write_outputs(out: Path, seeds: list[dict[str, Any]], resamples: int) -> str:
    out.mkdir(parents=True, exist_ok=True)
    summary = combine(seeds, resamples)
    md = markdown(seeds, summary)
    (out / "table2.md").write_text(md, encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    figure2(summary, out)
    return md


# ------------------------------------------------------------------ command line


def _options(flag: str, example: str) -> Any:
    """An argparse type: a JSON object of options for ``flag`` (the error names the flag and an example)."""
    def parse(text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{flag} must be a JSON object such as '{example}' ({exc})") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{flag} must be a JSON object such as '{example}'")
        return value
    return parse


def _defects(text: str) -> dict[str, float]:
    value = _options("--defects", '{"wrong_confusable": 0.2}')(text)
    if not all(isinstance(v, (int, float)) for v in value.values()):
        raise argparse.ArgumentTypeError("--defects must map defect kinds to rates, e.g. '{\"wrong_confusable\": 0.2}'")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("runs/table2"))
    p.add_argument("--ks", type=int, nargs="+", default=[25, 50], help="top-K / rand-K shares kept, in %%")
    p.add_argument("--grpo-k", type=int, default=50, help="the top-K whose policy GRPO continues (-1: no GRPO)")
    p.add_argument("--conditions", nargs="+", help="run only these (sft-raw is always run first)")
    p.add_argument("--stratify", nargs="+", default=["dataset", "question_type"],
                   help="stratify_by of top-K and rand-K (the quickstart's; or modality)")
    p.add_argument("--defects", type=_defects, default=None, help="the labels generator's defect rates as JSON "
                   "(default: the quickstart's)")
    p.add_argument("--max-items", type=int, default=1200, help="train images per run (seeded subsample)")
    p.add_argument("--sft-steps", type=int, default=500)
    p.add_argument("--grpo-steps", type=int, default=20)
    p.add_argument("--rm-items", type=int, default=600, help="train images (not generated from) whose clean "
                   "label-built questions build R_φ's graded set")
    p.add_argument("--rm-epochs", type=float, default=None, help="R_φ epochs (default: the quickstart's)")
    p.add_argument("--grpo-options", type=_options("--grpo-options", '{"temperature": 1.2}'), default=None,
                   help="GRPO trainer options as JSON, over the quickstart's (e.g. '{\"temperature\": 1.2}')")
    p.add_argument("--rm-grading", type=_options("--rm-grading", '{"answer_only_share": 0.25}'), default=None,
                   help="R_φ's grade-set options as JSON, over the quickstart's (e.g. '{\"answer_only_share\": 0.25}')")
    p.add_argument("--rm-from", choices=["others", "generated"], default="others",
                   help="R_φ's graded set from clean questions about other train images, or about the images the "
                        "generator uses (as the quickstart does)")
    p.add_argument("--rm-max-examples", type=int, default=None, help="R_φ graded examples (default: quickstart's)")
    p.add_argument("--eval-samples", type=int, default=600, help="held-out questions per seed")
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="evaluate on test (the final figures) or on val (to choose settings)")
    p.add_argument("--generate-for", nargs="+", default=["zero-shot", "sft-raw"],
                   help="conditions also evaluated by generation ('all': every one; costs about as much as "
                   "the likelihood pass); the rest by likelihood only")
    p.add_argument("--no-generate", action="store_true", help="likelihood evaluation only")
    p.add_argument("--no-defects", action="store_true", help="skip the per-defect measurement")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (CIs)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--smoke", action="store_true", help=f"tiny sizes to check the pipeline: {SMOKE}")
    p.add_argument("--combine", type=Path, nargs="+", help="only combine the table2.json files of earlier runs")
    args = p.parse_args(argv)
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)
    args.grpo_k = None if args.grpo_k is not None and args.grpo_k < 0 else args.grpo_k
    if args.grpo_k is not None and args.grpo_k not in args.ks:
        p.error(f"--grpo-k {args.grpo_k} is not one of --ks {args.ks}")
    for c in args.conditions or []:
        try:
            parse_condition(c)
        except ValueError as exc:
            p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.combine:
        seeds = []
        for path in args.combine:
            data = json.loads(path.read_text())
            seeds += data if isinstance(data, list) else [data]
        print(write_outputs(args.out, seeds, args.bootstrap))
        return
    import torch

    torch.set_num_threads(args.threads)
    from medgr2.plugins import get_registry

    registry = get_registry()
    seeds = []
    for seed in args.seeds:
        started = time.perf_counter()
        rec = run_seed(args, seed, registry)
        rec["wall_s"] = round(time.perf_counter() - started, 1)
        seeds.append(rec)
        (args.out / f"seed-{seed}").mkdir(parents=True, exist_ok=True)
        (args.out / f"seed-{seed}" / "table2.json").write_text(json.dumps(rec), encoding="utf-8")
        print(f"seed {seed}: {rec['wall_s']:.0f} s; stage seconds: {json.dumps(rec['stage_s'])}", file=sys.stderr)
    (args.out / "table2.json").write_text(json.dumps(seeds), encoding="utf-8")
    print(write_outputs(args.out, seeds, args.bootstrap))
    print(f"\nwritten: {args.out / 'table2.md'}, {args.out / 'table2.json'}, {args.out / 'figure2.csv'}")


if __name__ == "__main__":
    main()
