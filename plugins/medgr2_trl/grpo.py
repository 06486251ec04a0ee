"""The ``grpo`` trainer: TRL ``GRPOTrainer`` with multimodal prompts and weighted reward terms.

The reward is ``Σ weight_k · term_k`` over the configured terms (TRL ``reward_weights``); the
default ``0.8 · reward_model + 0.2 · answer_match`` reproduces the paper. TRL logs each term as
``rewards/<term>/mean`` and ``/std``; :class:`RewardMonitor` adds reward-hacking monitors per
step: ``monitor/rphi_match_corr`` (Pearson correlation of R_φ with answer match; a policy that
games R_φ drives it down) and ``monitor/frac_tied_groups`` (share of groups whose summed rewards
all tie: such groups give no advantage, hence no learning signal).
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medgr2.answers import build_prompt
from medgr2.data import TrainResult, VQASample
from medgr2.interfaces import StageContext
from medgr2_trl import training
from medgr2_trl.options import GRPOOptions, RewardTermSpec
from medgr2_trl.rewards import answer_match, completion_text


def grpo_rows(samples: Sequence[VQASample], fmt: str, context: StageContext) -> list[dict[str, Any]]:
    """Rows for TRL's GRPO: a conversational prompt, the images, and the columns the terms read."""
    return [{
        "images": training.sample_images(s, context),
        "prompt": [{"role": "user", "content": build_prompt(s, fmt)}],
        "answer": s.answer,
        "options": list(s.options),
        "question": s.question + "\n" + s.options_text(),
        "image_ref": s.images[0].model_dump_json(),
        "sample_id": s.id,
    } for s in samples]


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 1e-12 or syy <= 1e-12:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(sxx * syy)


def _group_auroc(scores: Sequence[float], match: Sequence[float], g: int) -> tuple[float, int] | None:
    """Within each group of ``g`` completions of one prompt: the share of (right, wrong) pairs whose right
    completion ``scores`` ranks higher (ties count half), and how many groups had both; None without any.

    This is what GRPO's group-relative advantage sees of a term: whether it prefers the right completion
    of the *same* question (a correlation over the whole batch also compares the questions' levels)."""
    wins, pairs, mixed = 0.0, 0, 0
    for start in range(0, len(scores) - len(scores) % g, g):
        right = [x for x, m in zip(scores[start:start + g], match[start:start + g], strict=True) if m >= 0.5]
        wrong = [x for x, m in zip(scores[start:start + g], match[start:start + g], strict=True) if m < 0.5]
        if right and wrong:
            mixed += 1
            pairs += len(right) * len(wrong)
            wins += sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    return (wins / pairs, mixed) if pairs else None


class RewardMonitor:
    """Collects the terms' outputs for one batch and logs the reward-hacking monitors.

    Each :class:`RewardTerm` reports here after computing; once every term has reported for the
    batch, the monitors are computed and logged through TRL's ``log_metric``.
    """

    def __init__(self, names: Sequence[str], weights: Sequence[float], num_generations: int):
        self.names, self.weights, self.num_generations = list(names), list(weights), num_generations
        self._batch: dict[str, list[float]] = {}

    def record(self, name: str, values: list[float], completions: Sequence[Any], columns: dict[str, Any]) -> None:
        self._batch[name] = values
        if len(self._batch) < len(self.names):
            return
        batch, self._batch = self._batch, {}
        log = columns.get("log_metric")
        if log is None:
            return
        for key, value in self.monitors(batch, completions, columns).items():
            log(key, value)

    def monitors(self, batch: dict[str, list[float]], completions: Sequence[Any],
                 columns: dict[str, Any]) -> dict[str, float]:
        """The monitors of one batch (a key is absent when undefined, e.g. a constant term)."""
        out: dict[str, float] = {}
        n = len(completions)
        total = [sum(w * batch[name][i] for name, w in zip(self.names, self.weights, strict=True))
                 for i in range(n)]
        g = self.num_generations
        groups = [total[i:i + g] for i in range(0, n - n % g, g)]
        if groups:
            out["monitor/frac_tied_groups"] = sum(max(gr) - min(gr) < 1e-6 for gr in groups) / len(groups)
        if "reward_model" in batch and "answer" in columns and "options" in columns:
            match = batch.get("answer_match") or answer_match(completions, columns["answer"], columns["options"])
            corr = _pearson(batch["reward_model"], match)
            if corr is not None:
                out["monitor/rphi_match_corr"] = corr
            out["monitor/match_rate"] = sum(match) / max(1, len(match))
            within = _group_auroc(batch["reward_model"], match, g)
            if groups:
                out["monitor/frac_mixed_groups"] = (within[1] if within else 0) / len(groups)
            if within is not None:
                out["monitor/rphi_group_auroc"] = within[0]
        return out


class RewardTerm:
    """A named reward callable for TRL: runs one registered term and reports to the monitor."""

    def __init__(self, name: str, fn: Callable[..., list[float]], monitor: RewardMonitor):
        self.__name__ = name
        self.fn, self.monitor = fn, monitor

    def __call__(self, prompts: Any = None, completions: Sequence[Any] = (), **columns: Any) -> list[float]:
        values = [float(v) for v in self.fn(completions, **columns)]
        self.monitor.record(self.__name__, values, completions, columns)
        return values


def build_terms(specs: Sequence[RewardTermSpec], context: StageContext,
                num_generations: int) -> tuple[list[RewardTerm], list[float]]:
    """The reward callables (registered terms, the reward model bound) and their weights."""
    if not specs:
        raise ValueError("grpo: `reward` is empty; give at least one term, e.g. [{term: answer_match}]")
    registry = context.registry
    if registry is None:
        from medgr2.plugins import get_registry

        registry = get_registry()
    names = [s.term for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"grpo: a reward term is listed twice in {names}; give each once with its weight")
    monitor = RewardMonitor(names, [s.weight for s in specs], num_generations)
    terms = []
    for spec in specs:
        fn = registry.create("reward_term", spec.term, spec.options)
        if "model" in inspect.signature(fn).parameters:
            if context.reward_model is None:
                raise ValueError(f"grpo: the reward term {spec.term!r} needs the reward model R_φ, but "
                                 "context.reward_model is None: train or load one first, or drop the term")
            fn = functools.partial(fn, model=context.reward_model)
        terms.append(RewardTerm(spec.term, fn, monitor))
    return terms, [s.weight for s in specs]


def fit_generation_batch(config_cls: Any, output_dir: Path, kwargs: dict[str, Any], n_samples: int,
                         opts: GRPOOptions) -> tuple[Any, list[str]]:
    """The GRPO config, its per-device batch lowered when ``n_samples`` prompts cannot fill one
    generation batch (TRL drops incomplete batches: 0 optimiser steps), with a note saying so.

    Raises:
        ValueError: not even a per-device batch of 1 fits (gradient accumulation × processes ask
            for more prompts than there are samples), or the batch was fixed through ``trl_args``.
    """
    config = config_cls(output_dir=str(output_dir), **kwargs)
    g = config.num_generations
    needed = config.generation_batch_size // g
    if needed <= n_samples:
        return config, []
    per_device, accum = config.per_device_train_batch_size, config.steps_per_generation
    fixed = {"generation_batch_size", "steps_per_generation"} & set(opts.trl_args)
    fits = [b for b in range(per_device - 1, 0, -1)
            if (b * accum) % g == 0 and (b * config.world_size * accum) % g == 0
            and b * config.world_size * accum // g <= n_samples]
    if fixed or not fits:
        raise ValueError(
            f"grpo: {n_samples} sample(s) cannot fill one generation batch of {needed} prompts × {g} generations "
            f"(per_device_train_batch_size {per_device} × {config.world_size} process(es) × "
            f"{accum} steps per generation), so GRPO would take 0 optimiser steps. "
            + (f"Remove {sorted(fixed)} from trl_args or give more samples"
               if fixed else "Lower gradient_accumulation_steps or num_generations, or give more samples"))
    new = fits[0]
    config = config_cls(output_dir=str(output_dir), **{**kwargs, "per_device_train_batch_size": new})
    note = (f"grpo: {n_samples} sample(s) cannot fill one generation batch of {needed} prompts × {g} generations; "
            f"per_device_train_batch_size lowered from {per_device} to {new} "
            f"({config.generation_batch_size // g} prompt(s) per generation batch) so that GRPO takes optimiser steps")
    return config, [note]


def _make_guard(opts: GRPOOptions, samples: Sequence[VQASample], fmt: str, processor: Any, output_dir: Path,
                write: Callable[[dict[str, Any]], None], context: StageContext) -> Any:
    from medgr2_trl.guard import answer_judge, collapse_guard, probe_samples, valid_rate

    spec = opts.collapse_guard
    assert spec is not None
    probe = probe_samples(samples, spec.probe_size)
    images = [training.sample_images(s, context) for s in probe]
    tokens = spec.max_new_tokens or opts.max_completion_length
    scorer = spec.scorer if spec.scorer != "auto" else getattr(context, "scorer", None)
    judge = answer_judge(fmt, None if scorer == "extract" else scorer, context.registry)
    return collapse_guard(spec, lambda model: valid_rate(model, processor, probe, images, fmt, tokens, judge),
                          len(probe), output_dir, write, context.reporter)


class GRPOPolicyTrainer:
    """GRPO on a VLM policy with weighted reward terms (R_φ, answer match, format ...)."""

    def __init__(self, options: GRPOOptions | None = None):
        self.options = options or GRPOOptions()

    @property
    def needs_reward_model(self) -> bool:
        """Whether a reward term reads R_φ (a ``model`` parameter, as the default ``reward_model`` term)."""
        from medgr2.plugins import get_registry

        registry = get_registry()
        return any("model" in inspect.signature(registry.create("reward_term", spec.term, spec.options)).parameters
                   for spec in self.options.reward)

    def _check(self) -> None:
        opts = self.options
        batch = opts.per_device_train_batch_size * opts.gradient_accumulation_steps
        if batch % opts.num_generations:
            raise ValueError(
                f"grpo: per_device_train_batch_size × gradient_accumulation_steps = {batch} is not a multiple of "
                f"num_generations = {opts.num_generations}; e.g. set per_device_train_batch_size to "
                f"{opts.num_generations * max(1, batch // opts.num_generations)}")
        if opts.use_vllm and not training.on_gpu():
            raise ValueError("grpo: use_vllm needs a GPU; set use_vllm: false on CPU")

    def train(self, samples: Sequence[VQASample], model_path: Path, output_dir: Path,
              context: StageContext) -> TrainResult:
        """GRPO from ``model_path`` on the prompts of ``samples``; the model lands in ``output_dir/final``."""
        if not samples:
            raise ValueError("grpo: no samples to train on")
        self._check()
        started = time.monotonic()
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        training.set_threads(self.options)
        output_dir = Path(output_dir)
        fmt = training.answer_format(self.options, context)
        terms, weights = build_terms(self.options.reward, context, self.options.num_generations)
        model, processor = training.load_policy(Path(model_path), bf16=training.use_bf16(self.options))
        opts = self.options.resolved(training.model_params(model))  # learning rate and beta for this size
        if opts.beta > 0 and opts.lora is None:
            # The reference model reloads from the policy's folder: it must be the saved starting point.
            model.config._name_or_path = str(Path(model_path).resolve())
        dataset = Dataset.from_list(grpo_rows(samples, fmt, context))
        kwargs = training.training_defaults(opts, context, model)
        kwargs.update(
            num_generations=opts.num_generations, max_completion_length=opts.max_completion_length,
            temperature=opts.temperature, beta=opts.beta, loss_type=opts.loss_type,
            scale_rewards=opts.scale_rewards, reward_weights=weights, use_vllm=opts.use_vllm,
            vllm_mode=opts.vllm_mode, log_completions=False)
        kwargs.update(opts.trl_args)
        config, notes = fit_generation_batch(GRPOConfig, output_dir, kwargs, len(samples), opts)
        for note in notes:
            context.reporter.log(f"[yellow]{note}[/]")
        history: list[dict[str, Any]] = []
        callbacks = training.make_callbacks(output_dir, history, context)
        guard = None
        if opts.collapse_guard is not None:
            write = functools.partial(callbacks[0].write, once=True)  # a resume re-probes its first step
            guard = _make_guard(opts, samples, fmt, processor, output_dir, write, context)
            callbacks.append(guard)
        trainer = GRPOTrainer(model=model, reward_funcs=terms, args=config, train_dataset=dataset,
                              processing_class=processor, peft_config=training.lora_config(opts),
                              callbacks=callbacks)
        if guard is not None:
            guard.trainer = trainer
        result = training.run_training(
            trainer, opts, output_dir, history, processor, context, started, guard=guard, warnings_=notes,
            metrics={"beta": float(opts.beta), "per_device_train_batch_size": float(config.per_device_train_batch_size),
                     "prompts_per_step": float(config.generation_batch_size // config.num_generations
                                               // config.steps_per_generation)})
        from medgr2_hf.cards import write_training_card  # the model card (README.md) of the saved folder

        write_training_card(result, samples=samples, base_model=model_path, method="GRPO",
                            answer_format=fmt, context=context, output_dir=output_dir)
        return result


__all__ = ["GRPOPolicyTrainer", "RewardMonitor", "RewardTerm", "build_terms", "completion_text", "grpo_rows"]
