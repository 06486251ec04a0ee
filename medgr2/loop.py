"""Algorithm 1 of MedGR2, over the component interfaces only.

Run-level stages (cycle 0) then, for t = 1..T::

    seed         load the data sources: seed items (train/val/test) and ready-made samples
    eval-set     the held-out VQA set (evaluation.sources, else label-built from test items)
    reward-init  build the 4-grade set, train R_φ v0, write its calibration
    policy-init  the starting policy (a local folder, or a tiny VLM built offline)
    ── per cycle t ──
    generate     G writes candidates from the train items
    score        R_φ scores them
    filter       threshold / top-K, dedup, overlap with D_gen, contamination → D_high
    sft          SFT on D_gen ∪ D_high
    grpo         GRPO with α·R_φ + β·match on D_high
    evaluate     the policy on the held-out set
    reward-update  policy samples are labelled and R_φ is retrained (continual, with replay)

Every stage writes its artifacts under ``runs/<name>/cycle-NNN/<stage>/`` and is recorded in the
manifest with the hashes of its inputs and config. With ``resume=True`` a stage is skipped when
its record matches, and redone otherwise, so a changed config re-runs only what it affects.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgr2 import __version__
from medgr2.config import ComponentSpec, ConfigError, RunConfig, load_config, resolved_dict
from medgr2.data import EvalReport, GradedExample, Ledger, SeedItem, TrainResult, VQASample
from medgr2.interfaces import SeedSet, StageContext
from medgr2.progress import Reporter, SilentReporter
from medgr2.registry import Registry
from medgr2.store import (
    RunStore, atomic_write_text, hash_data, hash_files, read_json, read_jsonl, write_json, write_jsonl,
)


class RunDirectoryExists(FileExistsError):
    """The run directory holds an earlier run and neither resume nor overwrite was asked."""


@dataclass
class CycleResult:
    """What one cycle produced."""

    cycle: int
    ledger: dict[str, Any]
    policy: str
    reward_model: str
    evaluation: EvalReport | None = None


@dataclass
class RunResult:
    """What :func:`run` returns."""

    run_dir: Path
    cycles: list[CycleResult] = field(default_factory=list)
    report: Path | None = None
    baseline: EvalReport | None = None

    @property
    def final_policy(self) -> str | None:
        return self.cycles[-1].policy if self.cycles else None


def _spec_hash(*specs: Any) -> str:
    return hash_data([s.model_dump(mode="json") if hasattr(s, "model_dump") else s for s in specs])


class Loop:
    """One run of Algorithm 1; a fresh instance per run. Use :func:`run` unless you need the parts."""

    def __init__(self, config: RunConfig, registry: Registry, reporter: Reporter, *, resume: bool = False):
        self.config, self.registry, self.reporter, self.resume = config, registry, reporter, resume
        self.store = RunStore(config.run_dir)
        self.executed: list[str] = []
        self.skipped: list[str] = []

    # ------------------------------------------------------------------ stage plumbing

    def context(self, cycle: int, stage: str, **extras: Any) -> StageContext:
        return StageContext(work_dir=self.store.stage_dir(cycle, stage), cycle=cycle, seed=self.config.seed + cycle,
                            reporter=self.reporter, registry=self.registry, extras=extras)

    def stage(self, cycle: int, name: str, inputs: str, config_hash: str, body: Callable[[StageContext], dict],
              *, keyed_cache: bool = False) -> dict:
        """Run ``body`` unless the manifest says this exact stage is done; return its outputs record.

        A stage interrupted earlier keeps its partial work (checkpoints, partial predictions, the
        request cache) when it is redone with the same inputs and config. When they changed, that
        work belongs to another run of the stage and the folder is emptied first, unless the stage
        says its cache is keyed by request content (``keyed_cache``), as generation's is.
        """
        key = self.store.key(cycle, name)
        if self.resume and self.store.is_complete(cycle, name, inputs, config_hash):
            self.skipped.append(key)
            self.reporter.log(f"[dim]✓ {key} (done, skipped)[/]")
            return self.store.record(cycle, name)["outputs"]
        self._claim_stage_dir(cycle, name, f"{inputs}:{config_hash}", keep=keyed_cache)
        self.reporter.log(f"[bold cyan]▶ {key}[/]")
        started = time.perf_counter()
        outputs = body(self.context(cycle, name))
        outputs = {**outputs, "wall_s": round(time.perf_counter() - started, 3)}
        self.store.mark_complete(cycle, name, inputs, config_hash, outputs)
        self.executed.append(key)
        return outputs

    def _claim_stage_dir(self, cycle: int, name: str, key: str, *, keep: bool) -> None:
        folder = self.store.stage_dir(cycle, name)
        marker = folder / ".stage-key"
        previous = marker.read_text(encoding="utf-8") if marker.exists() else None
        if previous != key and not keep and any(p.name != ".stage-key" for p in folder.iterdir()):
            self.reporter.log(f"[dim]{self.store.key(cycle, name)}: inputs or config changed; "
                              "earlier partial work of this stage is discarded[/]")
            shutil.rmtree(folder)
            folder.mkdir(parents=True)
        atomic_write_text(marker, key)

    def create(self, spec: ComponentSpec) -> Any:
        return self.registry.create(spec.kind, spec.name, spec.options)

    # ------------------------------------------------------------------ run-level stages

    def seed(self) -> SeedSet:
        from medgr2.stages.data import load_seed

        cfg = self.config.data

        def body(ctx: StageContext) -> dict:
            seed = load_seed(cfg.sources, self.registry, reporter=self.reporter)
            n_items = write_jsonl(ctx.work_dir / "items.jsonl", seed.items)
            n_samples = write_jsonl(ctx.work_dir / "samples.jsonl", seed.samples)
            write_jsonl(ctx.work_dir / "rejects.jsonl", seed.rejects)
            return {"items": n_items, "samples": n_samples, "rejects": len(seed.rejects)}

        self.stage(0, "seed", _spec_hash(*cfg.sources), _spec_hash(cfg), body)
        d = self.store.stage_dir(0, "seed")
        return SeedSet(read_jsonl(d / "items.jsonl", SeedItem), read_jsonl(d / "samples.jsonl", VQASample),
                       ())

    def eval_set(self, seed: SeedSet) -> list[VQASample]:
        cfg = self.config.evaluation
        seed_dir = self.store.stage_dir(0, "seed")

        def body(ctx: StageContext) -> dict:
            if cfg.sources:
                from medgr2.stages.data import load_seed

                held = load_seed(cfg.sources, self.registry, reporter=self.reporter)
                samples = [s for s in held.samples if s.split in (None, "test")]
                items = [i for i in held.items if i.split in (None, "test")]
            else:
                samples = [s for s in seed.samples if s.split == "test"]
                items = [i for i in seed.items if i.split == "test"]
            if items:  # label-built questions are correct by construction
                samples += list(self.create(cfg.question_builder).generate(items, ctx).samples)
            samples = _cap(samples, cfg.max_samples, self.config.seed)
            return {"samples": write_jsonl(ctx.work_dir / "samples.jsonl", samples)}

        self.stage(0, "eval-set", hash_files(seed_dir / "items.jsonl", seed_dir / "samples.jsonl"),
                   _spec_hash(cfg, self.config.seed), body)
        return read_jsonl(self.store.stage_dir(0, "eval-set") / "samples.jsonl", VQASample)

    def reward_init(self, seed: SeedSet) -> Path:
        from medgr2.stages import reward as rstage

        cfg = self.config.reward
        seed_dir = self.store.stage_dir(0, "seed")

        def body(ctx: StageContext) -> dict:
            build_grade_set = self.registry.get("function", "reward.grade_set")
            train, held_out = build_grade_set(
                cfg.grade_sources, self.registry,
                samples=() if cfg.references or cfg.grade_sources else self.reference_samples(seed, ctx),
                references=cfg.references, options=cfg.grading, seed=self.config.seed, reporter=self.reporter)
            write_jsonl(ctx.work_dir / "grades-train.jsonl", train)
            write_jsonl(ctx.work_dir / "grades-heldout.jsonl", held_out)
            rm = self.create(cfg.model)
            result = rstage.train_reward_model(rm, train, held_out, ctx)
            write_json(ctx.work_dir / "result.json", result)
            return {"checkpoint": result.checkpoint, "version": result.version, "examples": len(train),
                    **{f"calibration_{k}": v for k, v in result.metrics.items()}}

        out = self.stage(0, "reward-init", hash_files(seed_dir / "items.jsonl", seed_dir / "samples.jsonl"),
                         _spec_hash(cfg.model, cfg.grade_sources, cfg.references, cfg.grading,
                                    self.config.evaluation.question_builder, self.config.seed), body)
        return Path(out["checkpoint"])

    def reference_samples(self, seed: SeedSet, ctx: StageContext) -> list[VQASample]:
        """Train-split VQA samples whose answers and rationales seed the grade set (no reports needed)."""
        samples = [s for s in seed.samples if s.split == "train"]
        items = [i for i in seed.items if i.split == "train"]
        if items:
            samples += list(self.create(self.config.evaluation.question_builder).generate(items, ctx).samples)
        return samples

    def policy_init(self) -> Path:
        from medgr2.stages.train import ensure_policy

        cfg = self.config.policy

        def body(ctx: StageContext) -> dict:
            path = ensure_policy(cfg, ctx.work_dir, seed=self.config.seed, registry=self.registry)
            return {"checkpoint": str(path)}

        out = self.stage(0, "policy-init", "", _spec_hash(cfg.model, cfg.tiny_arch, self.config.seed), body)
        return Path(out["checkpoint"])

    def evaluate(self, cycle: int, name: str, policy: Path, eval_samples: Sequence[VQASample]) -> EvalReport | None:
        cfg = self.config.evaluation
        if cfg.evaluator is None or not eval_samples:
            return None
        from medgr2.stages.evaluate import evaluate

        def body(ctx: StageContext) -> dict:
            ctx.extras["answer_format"] = self.config.policy.answer_format
            report = evaluate(self.create(cfg.evaluator), eval_samples, policy, ctx.work_dir, ctx,
                              scorer=cfg.scorer)
            write_json(ctx.work_dir / "report.json", report)
            return {"accuracy": report.overall.accuracy, "n": report.overall.n}

        self.stage(cycle, name, hash_data([str(policy), _tree_hash(policy), [s.id for s in eval_samples]]),
                   _spec_hash(cfg.evaluator, cfg.scorer, self.config.policy.answer_format), body)
        return read_json(self.store.stage_dir(cycle, name) / "report.json", EvalReport)

    # ------------------------------------------------------------------ one cycle

    def cycle(self, t: int, items: Sequence[SeedItem], d_gen: list[VQASample], policy: Path, rm_path: Path,
              eval_samples: Sequence[VQASample]) -> tuple[CycleResult, list[VQASample], Path, Path]:
        from medgr2.stages.filter import apply_filters
        from medgr2.stages.generate import generate
        from medgr2.stages.reward import score_samples

        cfg = self.config

        def generate_body(ctx: StageContext) -> dict:
            generator = self.create(cfg.generation.generator)
            return _ledger_outputs(generate(generator, items, ctx, limit=cfg.generation.limit))

        self.stage(t, "generate", hash_data([i.id for i in items]), _spec_hash(cfg.generation, cfg.seed),
                   generate_body, keyed_cache=True)
        gen_dir = self.store.stage_dir(t, "generate")
        candidates = read_jsonl(gen_dir / "samples.jsonl", VQASample)

        rm = self.load_rm(rm_path)

        def score_body(ctx: StageContext) -> dict:
            scored = score_samples(rm, candidates, ctx)
            return {"scored": write_jsonl(ctx.work_dir / "scored.jsonl", scored)}

        self.stage(t, "score", hash_files(gen_dir / "samples.jsonl"), hash_data([str(rm_path), rm.version]), score_body)
        scored = read_jsonl(self.store.stage_dir(t, "score") / "scored.jsonl", VQASample)

        def filter_body(ctx: StageContext) -> dict:
            ctx.extras["eval_samples"] = list(eval_samples)
            steps = [(s.name, self.create(s)) for s in cfg.filters.steps]
            kept, decisions = apply_filters(steps, scored, d_gen, ctx, allow_overlap=cfg.filters.allow_overlap)
            write_jsonl(ctx.work_dir / "kept.jsonl", kept)
            return {"kept": len(kept), "decisions": len(decisions)}

        self.stage(t, "filter", hash_data([hash_files(self.store.stage_dir(t, "score") / "scored.jsonl"),
                                           [s.id for s in d_gen], [s.id for s in eval_samples]]),
                   _spec_hash(cfg.filters), filter_body)
        filt_dir = self.store.stage_dir(t, "filter")
        d_high = read_jsonl(filt_dir / "kept.jsonl", VQASample)
        if not d_high:
            self.reporter.log(f"[yellow]cycle {t}: the filters kept no sample (see {filt_dir / 'funnel.json'}); "
                              "training uses D_gen from earlier cycles only[/]")
        d_gen = _union(d_gen, d_high)
        write_jsonl(self.store.stage_dir(t, "dgen") / "dgen.jsonl", d_gen)

        policy = self.train(t, "sft", cfg.policy.sft, d_gen, policy, rm)
        policy = self.train(t, "grpo", cfg.policy.grpo, d_high or d_gen, policy, rm)
        report = self.evaluate(t, "evaluate", policy, eval_samples)
        rm_path = self.reward_update(t, rm_path, policy, d_high or d_gen)

        ledger = self.ledger(t, report, policy, rm_path)
        return CycleResult(t, ledger, str(policy), str(rm_path), report), d_gen, policy, rm_path

    def load_rm(self, path: Path) -> Any:
        rm = self.create(self.config.reward.model)
        rm.load(path)
        return rm

    def train(self, t: int, name: str, spec: ComponentSpec | None, samples: Sequence[VQASample], policy: Path,
              rm: Any) -> Path:
        if spec is None or not samples:
            return policy
        from medgr2.stages.train import train_policy

        def body(ctx: StageContext) -> dict:
            ctx.reward_model = rm
            ctx.extras["answer_format"] = self.config.policy.answer_format
            result = train_policy(self.create(spec), samples, policy, ctx.work_dir / "model", ctx)
            write_json(ctx.work_dir / "result.json", result)
            return {"checkpoint": result.checkpoint, "train_s": result.wall_s,
                    **{k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}}

        out = self.stage(t, name, hash_data([[s.id for s in samples], str(policy), _tree_hash(policy), rm.version]),
                         _spec_hash(spec, self.config.policy.answer_format, self.config.seed), body)
        return Path(out["checkpoint"])

    def reward_update(self, t: int, rm_path: Path, policy: Path, samples: Sequence[VQASample]) -> Path:
        cfg = self.config.reward
        if not cfg.retrain_each_cycle:
            return rm_path
        from medgr2.stages import reward as rstage

        def body(ctx: StageContext) -> dict:
            rm = self.load_rm(rm_path)
            history = _rm_history(self.store, t)
            label_policy_samples = self.registry.get("function", "reward.label_policy_samples")
            labelled = label_policy_samples(
                samples, policy, ctx, method=cfg.labelling, registry=self.registry,
                evaluator=self.create(self.config.evaluation.evaluator) if self.config.evaluation.evaluator else None,
                judge=self.create(cfg.judge) if cfg.judge else None)
            if not labelled:
                self.reporter.log("reward-update: no policy samples to label; R_φ is kept as it is")
                return {"checkpoint": str(rm_path), "version": rm.version, "labelled": 0, "replay": 0}
            rng = random.Random(self.config.seed + t)
            replay = rng.sample(history, min(len(history), int(len(labelled) * cfg.replay_fraction / max(
                1e-9, 1 - cfg.replay_fraction)))) if history else []
            write_jsonl(ctx.work_dir / "labelled.jsonl", labelled)
            held_out = read_jsonl(self.store.stage_dir(0, "reward-init") / "grades-heldout.jsonl", GradedExample)
            result = rstage.train_reward_model(rm, [*labelled, *replay], held_out, ctx)
            write_json(ctx.work_dir / "result.json", result)
            return {"checkpoint": result.checkpoint, "version": result.version, "labelled": len(labelled),
                    "replay": len(replay), **{f"calibration_{k}": v for k, v in result.metrics.items()}}

        out = self.stage(t, "reward-update", hash_data([str(rm_path), str(policy), _tree_hash(policy),
                                                        [s.id for s in samples]]),
                         _spec_hash(cfg, self.config.seed), body)
        return Path(out["checkpoint"])

    def ledger(self, t: int, report: EvalReport | None, policy: Path, rm_path: Path) -> dict[str, Any]:
        """Per-cycle ledger: counts by stage, rejects by reason, tokens, cost, times, versions, scores."""
        m = self.store.manifest()["stages"]

        def out(stage: str) -> dict[str, Any]:
            return m.get(self.store.key(t, stage), {}).get("outputs", {})

        gen_dir = self.store.stage_dir(t, "generate")
        gen_ledger = read_json(gen_dir / "ledger.json") if (gen_dir / "ledger.json").exists() else {}
        funnel_path = self.store.stage_dir(t, "filter") / "funnel.json"
        ledger = {
            "cycle": t,
            "generated": gen_out_count(gen_ledger),
            "valid": out("generate").get("samples", 0),
            "kept": out("filter").get("kept", 0),
            "generation": gen_ledger,
            "funnel": read_json(funnel_path) if funnel_path.exists() else {},
            "train_s": {s: out(s).get("train_s", 0.0) for s in ("sft", "grpo")},
            "stage_s": {s: out(s).get("wall_s") for s in
                        ("generate", "score", "filter", "sft", "grpo", "evaluate", "reward-update")},
            "rm_version": out("reward-update").get("version") or str(rm_path),
            "policy": str(policy),
            "evaluation": report.overall.model_dump(mode="json") if report else None,
        }
        write_json(self.store.root / f"cycle-{t:03d}" / "ledger.json", ledger)
        return ledger

    # ------------------------------------------------------------------ the whole run

    def run(self) -> RunResult:
        cfg = self.config
        self.store.save_config(resolved_dict(cfg, self.registry), versions(self.registry))
        seed = self.seed()
        eval_samples = self.eval_set(seed)
        rm_path = self.reward_init(seed)
        policy = self.policy_init()
        result = RunResult(self.store.root)
        result.baseline = self.evaluate(0, "evaluate-baseline", policy, eval_samples)
        items = _cap([i for i in seed.items if i.split == "train"], cfg.data.max_items, cfg.seed)
        d_gen: list[VQASample] = [s for s in seed.samples if s.split == "train"] if cfg.data.seed_set else []
        for t in range(1, cfg.cycles + 1):
            cycle_result, d_gen, policy, rm_path = self.cycle(t, items, d_gen, policy, rm_path, eval_samples)
            result.cycles.append(cycle_result)
        write_json(self.store.root / "ledger.json", [c.ledger for c in result.cycles])
        from medgr2.report import write_report

        result.report = write_report(self.store.root, registry=self.registry)
        return result


def gen_out_count(gen_ledger: dict[str, Any]) -> int:
    return int(gen_ledger.get("successes", 0)) + sum(gen_ledger.get("rejects", {}).values())


def _ledger_outputs(result: Any) -> dict[str, Any]:
    ledger: Ledger = result.ledger
    return {"samples": len(result.samples), "rejects": len(result.rejects), "requests": ledger.requests,
            "cost_usd": ledger.cost_usd}


def _cap(seq: Sequence[Any], n: int | None, seed: int) -> list[Any]:
    seq = list(seq)
    if n is None or len(seq) <= n:
        return seq
    return random.Random(seed).sample(seq, n)


def _union(d_gen: Sequence[VQASample], new: Sequence[VQASample]) -> list[VQASample]:
    seen = {s.id for s in d_gen}
    return [*d_gen, *(s for s in new if s.id not in seen)]


def _tree_hash(path: Path) -> str:
    """A cheap identity of a model folder: names, sizes and mtimes of its files."""
    p = Path(path)
    if not p.exists():
        return "absent"
    files = sorted(f for f in p.rglob("*") if f.is_file())
    return hash_data([[str(f.relative_to(p)), f.stat().st_size, int(f.stat().st_mtime)] for f in files])


def _rm_history(store: RunStore, t: int) -> list[GradedExample]:
    """Earlier RM training data (the grade set and every earlier cycle's labelled samples)."""
    out = read_jsonl(store.stage_dir(0, "reward-init") / "grades-train.jsonl", GradedExample)
    for c in range(1, t):
        out += read_jsonl(store.stage_dir(c, "reward-update") / "labelled.jsonl", GradedExample)
    return out


def versions(registry: Registry) -> dict[str, Any]:
    """medgr2's version and every loaded plugin's distribution and version."""
    plugins = {}
    for e in registry:
        plugins.setdefault(e.plugin, {"distribution": e.distribution, "version": e.version})
    return {"medgr2": __version__, "plugins": plugins}


def run(
    config: RunConfig | str | Path | dict[str, Any] | None = None,
    *,
    overrides: Sequence[str] = (),
    registry: Registry | None = None,
    reporter: Reporter | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> RunResult:
    """Run the MedGR2 loop and return its result (library entry point; silent by default).

    ``config`` may be a :class:`RunConfig`, a path to YAML/TOML, or a dict. A run directory that
    already holds a run is an error unless ``resume`` (continue it, redoing only stages whose
    inputs or config changed) or ``overwrite`` (move it aside to ``<name>.old-<time>``) is set.
    """
    from medgr2.plugins import ensure_registry

    registry = ensure_registry(registry)
    if isinstance(config, RunConfig):
        config = load_config(data=config.model_dump(mode="json"), overrides=overrides, registry=registry)
    elif isinstance(config, dict):
        config = load_config(data=config, overrides=overrides, registry=registry)
    else:
        config = load_config(config, overrides, registry=registry)
    run_dir = config.run_dir
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if not overwrite:
            raise RunDirectoryExists(
                f"run directory {run_dir} already holds a run: pass --resume to continue it, --overwrite to "
                f"move it aside, or --set name=NEW for a new run"
            )
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"))
    return Loop(config, registry, reporter or SilentReporter(), resume=resume).run()


__all__ = ["ConfigError", "CycleResult", "Loop", "RunDirectoryExists", "RunResult", "run"]
