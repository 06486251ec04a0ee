"""The GRPO collapse guard: stop when the policy stops giving valid answers, keep the best weights.

GRPO at too high a learning rate can turn a working SFT policy into one that babbles ("(kin (kin
(kin…": 0 % valid answers). The guard measures the *valid-answer rate* of greedy answers on a
small probe set of training prompts before GRPO, every ``every_steps`` optimiser steps and at the
end. "Valid" is what the evaluation counts as valid (:func:`answer_judge`): under the run's scorer
(``evaluation.scorer``, e.g. ``medgr2``: the answer, read out of the answer format, equals an
option's text), else when :func:`medgr2.answers.extract` finds an option. When the rate falls
below ``max(min_rate, min_ratio × start)`` (never above the starting rate), training stops, the
weights of the best probe (highest rate, the later on ties) are put back into the model, and the
trainer reports a warning. Each probe is a ``guard/valid_rate`` record in ``metrics.jsonl``.

The starting rate is kept in ``output_dir/collapse_guard.json`` so a resumed run compares against
the policy GRPO started from, not against the checkpoint it resumed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medgr2.answers import INVALID, build_prompt, extract, is_correct
from medgr2.data import VQASample
from medgr2_trl.options import CollapseGuardOptions

STATE_FILE = "collapse_guard.json"


def probe_samples(samples: Sequence[VQASample], size: int) -> list[VQASample]:
    """``size`` samples spread evenly over ``samples`` (all of them when fewer)."""
    n = len(samples)
    if n <= size:
        return list(samples)
    return [samples[i * n // size] for i in range(size)]


Judge = Callable[[str, VQASample], tuple[bool, bool]]
"""``judge(raw_answer, sample) -> (valid, correct)``."""


def answer_judge(fmt: str, scorer: str | None = None, registry: Any = None) -> Judge:
    """How the probe judges an answer: the evaluation's read-out of the answer format and the
    registered ``scorer``'s verdict; with no scorer, :func:`medgr2.answers.extract`. Under the
    ``medgr2`` scorer in the ``text`` format, "pneumonia (B)" is valid and "pneu (B)" is not; under
    ``extract`` both are (the letter is read)."""
    if scorer is None:
        return lambda raw, s: (extract(raw, s.options) != INVALID, is_correct(raw, s))
    from medgr2.plugins import ensure_registry
    from medgr2_eval.evaluator import read_answer
    from medgr2_eval.prediction_files import as_verdict

    fn = ensure_registry(registry).create("scorer", scorer)

    def judge(raw: str, sample: VQASample) -> tuple[bool, bool]:
        verdict = as_verdict(fn(model_answer=read_answer(raw, fmt), options=list(sample.options),
                                gt_answer=sample.answer))
        return bool(verdict.valid), bool(verdict.correct)

    return judge


def valid_rate(model: Any, processor: Any, samples: Sequence[VQASample], images: Sequence[Any], fmt: str,
               max_new_tokens: int, judge: Judge | None = None) -> tuple[float, float]:
    """(valid-answer rate, accuracy) of greedy answers of ``model`` to ``samples``."""
    from medgr2_hf.vlm import generate

    was_training = model.training
    model.eval()
    try:
        texts = generate(model, processor, list(images), [build_prompt(s, fmt) for s in samples],
                         max_new_tokens=max_new_tokens, batch_size=8)
    finally:
        model.train(was_training)
    judge = judge or answer_judge(fmt)
    verdicts = [judge(t, s) for t, s in zip(texts, samples, strict=True)]
    return sum(v for v, _ in verdicts) / len(samples), sum(c for _, c in verdicts) / len(samples)


def collapse_guard(options: CollapseGuardOptions, probe: Callable[[Any], tuple[float, float]], n_probe: int,
                   output_dir: Path, write: Callable[[dict[str, Any]], None], reporter: Any) -> Any:
    """A ``TrainerCallback`` running the guard; ``probe(model)`` gives (valid rate, accuracy) on
    ``n_probe`` prompts.

    After training, ``.fired`` tells whether it stopped GRPO, ``.warning`` says why, ``.kept_step``
    is the step whose weights were kept and ``.metrics`` holds the figures for the result.
    """
    from transformers import TrainerCallback

    state_path = Path(output_dir) / STATE_FILE

    class CollapseGuard(TrainerCallback):
        def __init__(self) -> None:
            self.trainer: Any = None  # set by the trainer: decisions are broadcast from the main process
            self.start: float | None = None
            self.best: tuple[float, int, dict[str, Any]] | None = None
            self.fired = False
            self.warning: str | None = None
            self.kept_step: int | None = None
            self.last_step = -1
            self.metrics: dict[str, float] = {}

        def threshold(self) -> float:
            assert self.start is not None
            return min(self.start, max(options.min_rate, options.min_ratio * self.start))

        def _measure(self, model: Any, step: int) -> float:
            rate, acc = probe(model)
            if self.trainer is not None and self.trainer.accelerator.num_processes > 1:
                from accelerate.utils import broadcast_object_list

                rate, acc = broadcast_object_list([rate, acc], from_process=0)
            self.last_step = step
            write({"step": step, "guard/valid_rate": rate, "guard/accuracy": acc})
            return rate

        def _snapshot(self, model: Any, rate: float, step: int) -> None:
            if self.best is None or rate >= self.best[0]:
                weights = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
                self.best = (rate, step, weights)

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
            rate = self._measure(model, state.global_step)
            resumed = state.global_step > 0 and state_path.is_file()  # else a fresh start: measure it again
            saved = json.loads(state_path.read_text()) if resumed else None
            self.start = float(saved["start_valid_rate"]) if saved else rate
            if saved is None and state.is_world_process_zero:
                state_path.write_text(json.dumps({"start_valid_rate": rate, "start_step": state.global_step}))
            self.metrics["guard_start_valid_rate"] = self.start
            self._check(model, state, control, rate)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
            if state.global_step % options.every_steps == 0:
                self._check(model, state, control, self._measure(model, state.global_step))

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
            if not self.fired and self.last_step != state.global_step:
                self._check(model, state, control, self._measure(model, state.global_step))
            if self.fired:
                self._restore(model)
            else:
                self.kept_step = state.global_step
            self.metrics["guard_kept_step"] = float(self.kept_step)

        def _check(self, model: Any, state: Any, control: Any, rate: float) -> None:
            self.metrics["guard_last_valid_rate"] = rate
            if rate < self.threshold():
                self.fired = True
                control.should_training_stop = True
                self.metrics["guard_collapse_step"] = float(state.global_step)
                self.warning = (
                    f"grpo: collapse guard fired at step {state.global_step}: the valid-answer rate on "
                    f"{n_probe} probe prompts fell to {rate:.3f} (start {self.start:.3f}, threshold "
                    f"{self.threshold():.3f}); training stopped and the weights of step "
                    f"{self.best[1] if self.best else state.global_step} were kept. Lower learning_rate or "
                    "raise beta (KL to the starting policy)")
                reporter.log(f"[yellow]{self.warning}[/]")
            else:
                self._snapshot(model, rate, state.global_step)

        def _restore(self, model: Any) -> None:
            if self.best is None:  # collapsed at the first probe (a resumed, already collapsed run)
                self.kept_step = self.last_step
                return
            import torch

            _, step, weights = self.best
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if name in weights:
                        param.copy_(weights[name].to(param.device))
            self.kept_step = step

    return CollapseGuard()
