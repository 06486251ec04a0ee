"""Algorithm 1 of MedGR2, over the component interfaces only.

The loop walks the stages declared in :data:`medgr2.stages.STAGES`: the run-level ones (cycle 0)
then, for t = 1..T, the cycle ones::

    seed               load the data sources: seed items (train/val/test) and ready-made samples
    eval-set           the held-out VQA set (evaluation.sources, else label-built from test items)
    reward-init        build the graded set, train R_φ v0, write its calibration
    policy-init        the starting policy (a local folder, or a tiny VLM built offline)
    evaluate-baseline  the starting policy on the held-out set
    ── per cycle t ──
    generate           G writes candidates from the train items
    score              R_φ scores them
    filter             threshold / top-K, dedup, overlap with D_gen, contamination → D_high
    generator-update   high-reward kept samples update the generator (generation.update)
    sft                SFT on D_gen ∪ D_high
    evaluate-sft       the SFT policy on the held-out set, when GRPO follows
    grpo               GRPO with α·R_φ + β·match on D_high
    evaluate           the policy on the held-out set
    reward-update      policy samples are labelled, R_φ is retrained (with replay) and promoted if it holds

A stage that cannot do its work raises :class:`~medgr2.stages.StageFailed`; one stopped by a
signal is recorded as partial and raises :class:`~medgr2.stages.StageIncomplete`. Degenerations the
loop survives (an empty kept set, an R_φ kept by its gate) are warnings in the cycle ledger and the report.

Every stage writes its artifacts under ``runs/<name>/cycle-NNN/<stage>/`` and is recorded in the
manifest with the hashes of its inputs and config. With ``resume=True`` a stage is skipped when
its record matches, and redone otherwise, so a changed config re-runs only what it affects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgr2 import __version__
from medgr2 import artifacts as a
from medgr2.config import ComponentSpec, ConfigError, RunConfig, load_config, resolved_dict
from medgr2.data import CycleLedger, EvalReport, GradedExample, Ledger, SeedItem, VQASample
from medgr2.interfaces import SeedSet, StageContext
from medgr2.progress import Reporter, SilentReporter
from medgr2.registry import Registry
from medgr2.stages import StageFailed, StageIncomplete, stage_context, stages
from medgr2.stages.evaluate import evaluate
from medgr2.stages.filter import apply_filters
from medgr2.stages.generate import generate, select_items
from medgr2.stages.reward import init_reward_model, score_samples, update_reward_model
from medgr2.stages.train import ensure_policy, launch_training, train_policy
from medgr2.store import (
    RunStore, atomic_write_text, hash_data, hash_files, read_json, read_jsonl, write_json, write_jsonl,
)
from medgr2.tracking import Tracker


class RunDirectoryExists(FileExistsError):
    """The run directory holds an earlier run and neither resume nor overwrite was asked."""


class StartedUnderLauncher(RuntimeError):
    """``medgr2 run`` was started by ``accelerate launch`` / ``torchrun`` (several ranks)."""


def refuse_distributed_start(config_path: str | os.PathLike[str] | None = None) -> None:
    """Refuse at once when this process is one rank of several: the loop orchestrates in one process and
    launches each training stage itself (``policy.launcher``), so N ranks would each run the whole loop."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        target = config_path or "CONFIG"
        raise StartedUnderLauncher(
            f"medgr2 run was started as one of {world} processes (accelerate launch / torchrun). Start it in one "
            f"process — `medgr2 run {target}` — and set policy.launcher (config_file: examples/accelerate/<yours>.yaml, "
            "num_processes: N): the loop then launches SFT and GRPO on N processes itself.")


@dataclass
class CycleResult:
    """What one cycle produced."""

    cycle: int
    ledger: CycleLedger
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
    warnings: list[str] = field(default_factory=list)


@dataclass
class RunState:
    """What the stages hand each other while the loop walks them."""

    seed: SeedSet = field(default_factory=SeedSet)
    eval_samples: list[VQASample] = field(default_factory=list)
    rm_path: Path = Path()
    policy: Path = Path()
    items: list[SeedItem] = field(default_factory=list)
    d_gen: list[VQASample] = field(default_factory=list)
    candidates: list[VQASample] = field(default_factory=list)
    scored: list[VQASample] = field(default_factory=list)
    d_high: list[VQASample] = field(default_factory=list)
    baseline: EvalReport | None = None
    evaluation: EvalReport | None = None
    sft_evaluation: EvalReport | None = None
    generator_options: dict[str, Any] = field(default_factory=dict)
    generator_version: str = ""


def _spec_hash(*specs: Any) -> str:
    return hash_data([s.model_dump(mode="json") if hasattr(s, "model_dump") else s for s in specs])


class Loop:
    """One run of Algorithm 1; a fresh instance per run. Use :func:`run` unless you need the parts.

    :meth:`run` walks :data:`medgr2.stages.STAGES`: each stage name maps to one method below
    (``seed`` → :meth:`seed`, ``reward-init`` → :meth:`reward_init` ...), which reads what it needs
    from the :class:`RunState`, runs the stage function through :meth:`stage` (resume, partial
    work, manifest) and puts what it made back into the state.
    """

    def __init__(self, config: RunConfig, registry: Registry, reporter: Reporter, *, resume: bool = False):
        self.config, self.registry, self.reporter, self.resume = config, registry, reporter, resume
        self.store = RunStore(config.run_dir)
        self.executed: list[str] = []
        self.skipped: list[str] = []
        self.warnings: list[str] = []
        self.tracker: Tracker | None = None

    # ------------------------------------------------------------------ stage plumbing

    def context(self, cycle: int, stage: str, **typed: Any) -> StageContext:
        """The context of one stage run: its folder, seed, reporter, registry and the run's typed facts."""
        return stage_context(self.config, self.store.stage_dir(cycle, stage), cycle=cycle, registry=self.registry,
                             reporter=self.reporter, **typed)

    def stage(self, cycle: int, name: str, inputs: str, config_hash: str, body: Callable[[StageContext], dict],
              *, keyed_cache: bool = False, **typed: Any) -> dict:
        """Run ``body`` unless the manifest says this exact stage is done; return its outputs record.

        A stage interrupted earlier keeps its partial work (checkpoints, partial predictions, the
        request cache) when it is redone with the same inputs and config. When they changed, that
        work belongs to another run of the stage and the folder is emptied first, unless the stage
        says its cache is keyed by request content (``keyed_cache``), as generation's is.

        A body that returns ``{"incomplete": reason, ...}`` stopped early: the stage is recorded as
        partial (never complete) and :class:`~medgr2.stages.StageIncomplete` ends the run.
        """
        key = self.store.key(cycle, name)
        if self.resume and self.store.is_complete(cycle, name, inputs, config_hash):
            self.skipped.append(key)
            self.reporter.log(f"[dim]✓ {key} (done, skipped)[/]")
            return self.store.record(cycle, name)["outputs"]
        self._claim_stage_dir(cycle, name, f"{inputs}:{config_hash}", keep=keyed_cache)
        self.reporter.log(f"[bold cyan]▶ {key}[/]")
        started = time.perf_counter()
        ctx = self.context(cycle, name, **typed)
        outputs = body(ctx)
        outputs = {**outputs, "wall_s": round(time.perf_counter() - started, 3)}
        incomplete = outputs.pop("incomplete", None)
        if incomplete:
            self.store.mark_partial(cycle, name, inputs, config_hash, outputs)
            signum = getattr(ctx.stop, "signum", None)
            raise StageIncomplete(key, f"{incomplete}; the finished work is kept: continue with --resume",
                                  128 + signum if signum else 130)
        self.store.mark_complete(cycle, name, inputs, config_hash, outputs)
        self.executed.append(key)
        if self.tracker is not None:
            self.tracker.log(name, outputs, step=cycle)
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

    def warn(self, message: str) -> None:
        """Record a degeneration warning: it goes to the log, the cycle ledger and the report."""
        if message not in self.warnings:
            self.warnings.append(message)
        self.reporter.log(f"[yellow]warning: {message}[/]")

    def _dir(self, cycle: int, stage: str) -> Path:
        return self.store.stage_dir(cycle, stage)

    # ------------------------------------------------------------------ run-level stages

    def seed(self, t: int, state: RunState) -> None:
        from medgr2.stages.seed import load_seed

        cfg = self.config.data

        def body(ctx: StageContext) -> dict:
            seed = load_seed(cfg.sources, self.registry, reporter=self.reporter)
            n_items = write_jsonl(ctx.work_dir / a.ITEMS, seed.items)
            n_samples = write_jsonl(ctx.work_dir / a.SAMPLES, seed.samples)
            write_jsonl(ctx.work_dir / a.REJECTS, seed.rejects)
            return {"items": n_items, "samples": n_samples, "rejects": len(seed.rejects)}

        self.stage(0, "seed", _spec_hash(*cfg.sources), _spec_hash(cfg), body)
        d = self._dir(0, "seed")
        state.seed = SeedSet(read_jsonl(d / a.ITEMS, SeedItem), read_jsonl(d / a.SAMPLES, VQASample), ())
        state.items = select_items(state.seed, max_items=cfg.max_items, run_seed=self.config.seed,
                                   limit=self.config.generation.limit)
        state.d_gen = [s for s in state.seed.samples if s.split == "train"] if cfg.seed_set else []

    def eval_set(self, t: int, state: RunState) -> None:
        cfg = self.config.evaluation
        seed_dir = self._dir(0, "seed")

        def body(ctx: StageContext) -> dict:
            if cfg.sources:
                from medgr2.stages.seed import load_seed

                held = load_seed(cfg.sources, self.registry, reporter=self.reporter)
                samples = [s for s in held.samples if s.split in (None, "test")]
                items = [i for i in held.items if i.split in (None, "test")]
            else:
                samples = [s for s in state.seed.samples if s.split == "test"]
                items = [i for i in state.seed.items if i.split == "test"]
            if items:  # label-built questions are correct by construction
                samples += list(self.create(cfg.question_builder).generate(items, ctx).samples)
            samples = _cap(samples, cfg.max_samples, self.config.seed)
            if cfg.evaluator is not None and not samples:
                raise StageFailed("eval-set", "the evaluation set is empty: give evaluation.sources, or data "
                                  "sources with a test split (or set evaluation.evaluator: null)")
            return {"samples": write_jsonl(ctx.work_dir / a.SAMPLES, samples)}

        self.stage(0, "eval-set", hash_files(seed_dir / a.ITEMS, seed_dir / a.SAMPLES),
                   _spec_hash(cfg, self.config.seed), body)
        state.eval_samples = read_jsonl(self._dir(0, "eval-set") / a.SAMPLES, VQASample)

    def reward_init(self, t: int, state: RunState) -> None:
        cfg = self.config.reward
        seed_dir = self._dir(0, "seed")

        def body(ctx: StageContext) -> dict:
            result = init_reward_model(self.config, state.seed, ctx)
            judge = {k: v for k, v in result.metrics.items() if k.startswith("judge_")}
            return {"checkpoint": result.checkpoint, "version": result.version,
                    "examples": len(read_jsonl(ctx.work_dir / a.GRADES_TRAIN)), **judge,
                    **{f"calibration_{k}": v for k, v in result.metrics.items() if k not in judge}}

        out = self.stage(0, "reward-init", hash_files(seed_dir / a.ITEMS, seed_dir / a.SAMPLES),
                         _spec_hash(cfg.model, cfg.grade_sources, cfg.grade_set, cfg.calibrator, cfg.judge,
                                    cfg.judge_seed_samples, self.config.evaluation.question_builder,
                                    self.config.seed), body)
        state.rm_path = Path(out["checkpoint"])
        spearman, ordered = out.get("calibration_heldout_spearman"), out.get("calibration_heldout_means_ordered")
        if spearman is not None and (spearman < cfg.warn_below_spearman or ordered == 0):
            self.warn(f"R_φ v0 ranks its held-out graded examples poorly (Spearman {spearman:.2f}, grade means "
                      f"{'in' if ordered else 'out of'} order): filtering on its scores may keep the wrong samples; "
                      "train it longer (reward.model.options.epochs, max_train_examples) or give it more reference "
                      "text (reward.references)")

    def policy_init(self, t: int, state: RunState) -> None:
        cfg = self.config.policy

        def body(ctx: StageContext) -> dict:
            path = ensure_policy(cfg, ctx.work_dir, seed=self.config.seed, registry=self.registry)
            return {"checkpoint": str(path)}

        out = self.stage(0, "policy-init", "", _spec_hash(cfg.model, cfg.tiny_arch, self.config.seed), body)
        state.policy = Path(out["checkpoint"])

    def evaluate_baseline(self, t: int, state: RunState) -> None:
        state.baseline = self._evaluate(0, "evaluate-baseline", state.policy, state.eval_samples)

    # ------------------------------------------------------------------ per-cycle stages

    def generate(self, t: int, state: RunState) -> None:
        cfg = self.config
        spec = cfg.generation.generator
        if state.generator_options:  # the generator as evolved by earlier cycles' generator-update
            spec = spec.model_copy(update={"options": {**spec.options, **state.generator_options}})

        def body(ctx: StageContext) -> dict:
            result = generate(self.create(spec), state.items, ctx)
            ledger: Ledger = result.ledger
            outputs = {"samples": len(result.samples), "rejects": len(result.rejects), "requests": ledger.requests,
                       "cost_usd": ledger.cost_usd}
            if not ledger.extra.get("completed", True):
                done = len(result.samples) + len(result.rejects)
                outputs["incomplete"] = f"stopped after {done} of {len(state.items)} items"
            elif ledger.extra.get("transport_failures"):  # not final: never marked complete
                raise StageFailed(self.store.key(t, "generate"), (
                    f"{ledger.extra['transport_failures']} of {len(state.items)} items failed in transport after "
                    f"retries ({ledger.extra.get('errors')}; see {ctx.work_dir / a.REJECTS}); the replies received "
                    "are cached: continue with --resume to ask for the rest"))
            return outputs

        self.stage(t, "generate", hash_data([i.id for i in state.items]),
                   _spec_hash(cfg.generation, cfg.seed, state.generator_options), body, keyed_cache=True)
        state.candidates = read_jsonl(self._dir(t, "generate") / a.SAMPLES, VQASample)

    def score(self, t: int, state: RunState) -> None:
        rm = self.load_rm(state.rm_path)
        gen_samples = self._dir(t, "generate") / a.SAMPLES

        def body(ctx: StageContext) -> dict:
            return {"scored": write_jsonl(ctx.work_dir / a.SCORED, score_samples(rm, state.candidates, ctx))}

        self.stage(t, "score", hash_files(gen_samples), hash_data([str(state.rm_path), rm.version]), body)
        state.scored = read_jsonl(self._dir(t, "score") / a.SCORED, VQASample)

    def filter(self, t: int, state: RunState) -> None:
        cfg = self.config

        def body(ctx: StageContext) -> dict:
            steps = [(s.name, self.create(s)) for s in cfg.filters.steps]
            kept, decisions = apply_filters(steps, state.scored, state.d_gen, ctx,
                                            allow_overlap=cfg.filters.allow_overlap)
            return {"kept": len(kept), "decisions": len(decisions)}

        self.stage(t, "filter", hash_data([hash_files(self._dir(t, "score") / a.SCORED), [s.id for s in state.d_gen],
                                           [s.id for s in state.eval_samples]]),
                   _spec_hash(cfg.filters), body, eval_samples=tuple(state.eval_samples))
        state.d_high = read_jsonl(self._dir(t, "filter") / a.KEPT, VQASample)
        if not state.d_high:
            self.warn(f"cycle {t}: the filters kept no sample of {len(state.scored)} (see "
                      f"{self._dir(t, 'filter') / a.FUNNEL}); training uses D_gen from earlier cycles only")
        state.d_gen = _union(state.d_gen, state.d_high)
        write_jsonl(self._dir(t, "dgen") / a.DGEN, state.d_gen)

    def generator_update(self, t: int, state: RunState) -> None:
        spec = self.config.generation.update
        if spec is None:
            return
        bank = self.store.root / "generator"  # kept across cycles: each version builds on the previous ones
        kept = state.d_high

        def body(ctx: StageContext) -> dict:
            update = dict(self.create(spec).update(kept, dataclasses.replace(ctx, work_dir=bank)))
            if not update.get("version") or not isinstance(update.get("options"), dict):
                raise StageFailed(self.store.key(t, "generator-update"), f"the {spec.name!r} updater returned "
                                  f"{sorted(update)}; it must return a version and the generator options")
            return {"version": str(update["version"]), "options": update["options"],
                    **{k: v for k, v in update.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}}

        out = self.stage(t, "generator-update", hash_data([s.id for s in kept]),
                         _spec_hash(spec, self.config.seed), body)
        state.generator_options = dict(out["options"])
        state.generator_version = out["version"]

    def sft(self, t: int, state: RunState) -> None:
        state.policy = self._train(t, "sft", self.config.policy.sft, state.d_gen, state)

    def evaluate_sft(self, t: int, state: RunState) -> None:
        if self.config.policy.sft is not None and self.config.policy.grpo is not None:
            state.sft_evaluation = self._evaluate(t, "evaluate-sft", state.policy, state.eval_samples)

    def grpo(self, t: int, state: RunState) -> None:
        state.policy = self._train(t, "grpo", self.config.policy.grpo, state.d_high or state.d_gen, state)

    def evaluate(self, t: int, state: RunState) -> None:
        state.evaluation = self._evaluate(t, "evaluate", state.policy, state.eval_samples)

    def reward_update(self, t: int, state: RunState) -> None:
        cfg = self.config.reward
        if not cfg.retrain_each_cycle:
            return
        samples, rm_path, policy = state.d_high or state.d_gen, state.rm_path, state.policy

        def body(ctx: StageContext) -> dict:
            held_out = read_jsonl(self._dir(0, "reward-init") / a.GRADES_HELDOUT, GradedExample)
            outcome = update_reward_model(self.config, self.load_rm(rm_path), rm_path, policy, samples,
                                          _rm_history(self.store, t), held_out, ctx)
            return {"checkpoint": outcome.checkpoint, "version": outcome.version, "labelled": outcome.labelled,
                    "replay": outcome.replay, "promoted": outcome.promoted, "gate": outcome.reason,
                    "warnings": outcome.warnings, **outcome.judge,
                    **{f"calibration_{k}": v for k, v in outcome.after.items()}}

        out = self.stage(t, "reward-update", hash_data([str(rm_path), str(policy), _tree_hash(policy),
                                                        [s.id for s in samples]]),
                         _spec_hash(cfg, self.config.seed), body)
        for w in out.get("warnings", []):
            self.warn(w)
        state.rm_path = Path(out["checkpoint"])

    # ------------------------------------------------------------------ shared by stages

    def _evaluate(self, cycle: int, name: str, policy: Path, eval_samples: Sequence[VQASample]) -> EvalReport | None:
        cfg = self.config.evaluation
        if cfg.evaluator is None:
            return None

        def body(ctx: StageContext) -> dict:
            report = evaluate(self.create(cfg.evaluator), eval_samples, policy, ctx.work_dir, ctx, scorer=cfg.scorer)
            write_json(ctx.work_dir / a.EVAL_REPORT, report)
            outputs = {"accuracy": report.overall.accuracy, "n": report.overall.n}
            for i, spec in enumerate(cfg.also or ()):  # beside the main evaluator, each in its own folder
                folder = ctx.work_dir / f"{a.ALSO_PREFIX}{i}"
                also = evaluate(self.create(spec), eval_samples, policy, folder, ctx, scorer=cfg.scorer)
                write_json(folder / a.EVAL_REPORT, also)
                outputs[f"also_{i}_accuracy"] = also.overall.accuracy
            return outputs

        self.stage(cycle, name, hash_data([str(policy), _tree_hash(policy), [s.id for s in eval_samples]]),
                   _spec_hash(cfg.evaluator, [x.model_dump(mode="json") for x in cfg.also or ()], cfg.scorer,
                              self.config.policy.answer_format), body)
        return read_json(self._dir(cycle, name) / a.EVAL_REPORT, EvalReport)

    def load_rm(self, path: Path) -> Any:
        rm = self.create(self.config.reward.model)
        rm.load(path)
        return rm

    def _train(self, t: int, name: str, spec: ComponentSpec | None, samples: Sequence[VQASample],
               state: RunState) -> Path:
        if spec is None:
            return state.policy
        if not samples:
            raise StageFailed(self.store.key(t, name), "no samples to train on: the filters kept none and D_gen is "
                              f"empty (see {self._dir(t, 'filter') / a.FUNNEL}); lower the threshold or generate more")
        rm = self.load_rm(state.rm_path)
        policy = state.policy

        launcher = self.config.policy.launcher
        rm_folder = state.rm_path

        def body(ctx: StageContext) -> dict:
            with self.tracker.for_trainer(self.store.key(t, name)) if self.tracker else contextlib.nullcontext():
                return train_body(ctx)

        def train_body(ctx: StageContext) -> dict:
            if launcher is not None:
                result = launch_training(name, self.store.root / "config.yaml", samples, policy,
                                         ctx.work_dir / a.POLICY_DIR, ctx, launcher,
                                         reward_model=rm_folder if name == "grpo" else None)
            else:
                result = train_policy(self.create(spec), samples, policy, ctx.work_dir / a.POLICY_DIR, ctx)
            steps = result.metrics.get("optimizer_steps")
            if steps is not None and steps < 1:
                raise StageFailed(self.store.key(t, name), f"0 optimizer steps on {len(samples)} samples: nothing "
                                  "was trained (see the trainer's batch size and max_steps)")
            for w in result.warnings:
                self.warn(f"{self.store.key(t, name)}: {w}")
            return {"checkpoint": result.checkpoint, "train_s": result.wall_s,
                    **{k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}}

        out = self.stage(t, name, hash_data([[s.id for s in samples], str(policy), _tree_hash(policy), rm.version]),
                         _spec_hash(spec, self.config.policy.answer_format, self.config.seed), body, reward_model=rm)
        return Path(out["checkpoint"])

    def ledger(self, t: int, state: RunState, warnings: Sequence[str]) -> CycleLedger:
        """The cycle's :class:`~medgr2.data.CycleLedger`, written to ``cycle-NNN/ledger.json``."""
        m = self.store.manifest()["stages"]

        def out(stage: str) -> dict[str, Any]:
            return m.get(self.store.key(t, stage), {}).get("outputs", {})

        judged = [out("reward-update")] + ([m.get(self.store.key(0, "reward-init"), {}).get("outputs", {})]
                                           if t == 1 else [])
        gen_path = self._dir(t, "generate") / a.GENERATION_LEDGER
        gen = read_json(gen_path, Ledger) if gen_path.exists() else None
        funnel_path = self._dir(t, "filter") / a.FUNNEL
        ledger = CycleLedger(
            cycle=t, items=len(state.items),
            generated=(gen.successes + sum(gen.rejects.values())) if gen else 0,
            valid=out("generate").get("samples", 0), kept=out("filter").get("kept", 0),
            requests=gen.requests if gen else 0, cost_usd=gen.cost_usd if gen else 0.0, generation=gen,
            generator_version=str(gen.extra.get("generator_version", "")) if gen else "",
            generator_next=str(out("generator-update").get("version", "")),
            judge_requests=int(sum(o.get("judge_requests", 0) for o in judged)),
            judge_cost_usd=sum(o.get("judge_cost_usd", 0.0) for o in judged),
            funnel=read_json(funnel_path) if funnel_path.exists() else {},
            optimizer_steps={s: int(out(s)["optimizer_steps"]) for s in ("sft", "grpo")
                             if "optimizer_steps" in out(s)},
            train_s={s: out(s).get("train_s", 0.0) for s in ("sft", "grpo")},
            stage_s={s.name: out(s.name).get("wall_s") for s in stages("cycle")},
            rm_version=out("reward-update").get("version") or str(state.rm_path),
            rm_promoted=out("reward-update").get("promoted"), policy=str(state.policy),
            evaluation=state.evaluation.overall if state.evaluation else None,
            sft_evaluation=state.sft_evaluation.overall if state.sft_evaluation else None, warnings=tuple(warnings))
        write_json(self.store.root / f"cycle-{t:03d}" / a.CYCLE_LEDGER, ledger)
        return ledger

    # ------------------------------------------------------------------ the whole run

    def run(self) -> RunResult:
        """Walk the declared stages: the run-level ones once, then the cycle ones for t = 1..T."""
        self.store.save_config(resolved_dict(self.config, self.registry), versions(self.registry))
        self.tracker = Tracker(self.config.report_to, self.store.root, self.config.name)
        try:
            return self._walk()
        finally:
            self.tracker.close()

    def _walk(self) -> RunResult:
        state = RunState()
        result = RunResult(self.store.root)
        for spec in stages("run"):
            getattr(self, _method(spec.name))(0, state)
        result.baseline = state.baseline
        for t in range(1, self.config.cycles + 1):
            before = len(self.warnings)
            state.evaluation = state.sft_evaluation = None
            for spec in stages("cycle"):
                getattr(self, _method(spec.name))(t, state)
            ledger = self.ledger(t, state, self.warnings[before:])
            result.cycles.append(CycleResult(t, ledger, str(state.policy), str(state.rm_path), state.evaluation))
        write_json(self.store.root / a.CYCLE_LEDGER, [c.ledger.model_dump(mode="json") for c in result.cycles])
        write_json(self.store.root / WARNINGS_FILE, self.warnings)
        result.warnings = list(self.warnings)
        from medgr2.report import write_report

        result.report = write_report(self.store.root, registry=self.registry)
        return result


WARNINGS_FILE = "warnings.json"


def _method(stage: str) -> str:
    return stage.replace("-", "_")


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
    out = read_jsonl(store.stage_dir(0, "reward-init") / a.GRADES_TRAIN, GradedExample)
    for c in range(1, t):
        out += read_jsonl(store.stage_dir(c, "reward-update") / a.LABELLED, GradedExample)
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

    refuse_distributed_start(config if isinstance(config, (str, Path)) else None)
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


__all__ = ["ConfigError", "CycleResult", "Loop", "RunDirectoryExists", "RunResult", "RunState", "StageFailed",
           "StageIncomplete", "StartedUnderLauncher", "run"]
