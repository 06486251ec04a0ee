"""The ``vqa`` evaluator: a local VLM answers every VQA sample (batched, greedy), then a named scorer.

For each sample the policy is prompted in an answer format (``letter`` / ``text`` / ``think``,
see :mod:`medgr2.answers`) or with a published protocol's prompt (``medgr2``, ``med-r1``). Its
output is kept verbatim as ``raw_answer``; ``model_answer``, which the scorer judges, is the
answer read out of the answer format (think block dropped, ``<answer>`` tags unwrapped, the
trailing ``(B)`` letter marker removed) or, under a protocol prompt, the output as it is. With
``option_scores`` on, each option's answer is also scored by log-probability, so the report's
AUROC rests on real scores.

``mode: likelihood`` is the OmniMedVQA "likelihood" protocol: nothing is generated; each option's
answer (:func:`option_targets`) is scored by its log-likelihood after the prompt (mean per token
by default, ``likelihood_norm: sum`` for the total) and the highest-scoring option is the answer
(``model_answer`` = its text, ``raw_answer`` = ``"likelihood: <letter>"``, ``option_scores`` =
the scores). Every answer is therefore a valid option: an untrained model scores near chance,
not 0, which is how a zero-shot baseline is measured beside generation.

Writes into ``output_dir``: ``predictions.jsonl`` (:class:`~medgr2.data.Prediction` records),
``report.json`` and ``report.md``; ``predictions.partial.jsonl`` holds finished batches until the
evaluation completes (a rerun resumes from it).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medgr2 import artifacts
from medgr2.data import LETTERS, EvalReport, Prediction, VQASample
from medgr2.interfaces import StageContext
from medgr2.store import JsonlAppender, atomic_write_text, read_jsonl, write_jsonl
from medgr2_eval.options import VQAEvaluatorOptions

_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
_LETTER_SUFFIX = re.compile(r"\s*\(\s*[A-H]\s*\)\s*\.?\s*$")


def medgr2_prompt(sample: Any) -> str:
    """The MedGR2 authors' evaluation prompt (answers are option texts)."""
    return (
        f"{sample.question.strip()} Please choose one of the following: {' or '.join(sample.options)}. "
        "You must pick only one answer."
    )


def med_r1_prompt(sample: Any) -> str:
    """Med-R1's evaluation prompt (its ``QUESTION_TEMPLATE``) over the question and lettered options."""
    listed = "\n".join(f"{letter}) {o}" for letter, o in zip(LETTERS, sample.options))
    return (
        f"{sample.question.strip()}\n{listed} Provide the correct single-letter choice (A, B, C, D,...) "
        "inside <answer>...</answer> tags."
    )


PROTOCOL_PROMPTS = {"medgr2": medgr2_prompt, "med-r1": med_r1_prompt}
"""Prompts of published protocols; their outputs are scored raw (``model_answer`` = the output)."""


def read_answer(raw: str, fmt: str) -> str:
    """The answer written in an answer format, without the format's wrapping.

    >>> read_answer("<think>opaque lobe</think><answer>pneumonia (B)</answer>", "think")
    'pneumonia'
    >>> [read_answer("pneumonia (B)", "text"), read_answer("B", "letter")]
    ['pneumonia', 'B']
    """
    text = raw
    tags = _ANSWER.findall(text)
    if tags:
        text = tags[-1]
    elif "<think>" in text:
        text = _THINK.sub(" ", text)
    if fmt != "letter":
        text = _LETTER_SUFFIX.sub("", text)
    return text.strip()


def option_targets(sample: VQASample, fmt: str, prompt: str = "format") -> list[str]:
    """The answer the policy would write for each option (scored by log-probability).

    Under the ``medgr2`` prompt: the option text; under ``med-r1``: ``<answer>B</answer>``; in an
    answer format: its target (the ``think`` format is scored on its answer, ``text (B)``).
    """
    if prompt == "medgr2":
        return list(sample.options)
    if prompt == "med-r1":
        return [f"<answer>{letter}</answer>" for letter in LETTERS[: len(sample.options)]]
    from medgr2.answers import target_text

    kind = "letter" if fmt == "letter" else "text"
    return [
        target_text(sample.model_copy(update={"answer": o, "rationale": ""}), kind) for o in sample.options
    ]


def pick_option(scores: Sequence[float]) -> int:
    """The index of the highest score (the first on ties; NaN never wins).

    >>> pick_option([-2.5, -0.5, -0.5, float("nan")])
    1
    """
    best = 0
    for i, x in enumerate(scores):
        if not math.isnan(x) and (math.isnan(scores[best]) or x > scores[best]):
            best = i
    return best


def option_loglik(model: Any, processor: Any, image: Any, text: str, targets: Sequence[str]
                  ) -> list[tuple[float, int]]:
    """(summed log-probability, token count) of each target as the answer to (image, text).

    Same computation as :func:`medgr2_hf.vlm.score_options` (one left-padded batch, continuation
    tokens at the end of each row), plus the token counts the per-token mean needs.
    """
    import torch

    from medgr2_hf.vlm import build_inputs

    prompt_len = build_inputs(processor, [image], [text])["input_ids"].shape[1]
    batch = build_inputs(processor, [image] * len(targets), [text] * len(targets),
                         device=model.device, continuations=list(targets))
    lengths = (batch["attention_mask"].sum(dim=1) - prompt_len).tolist()
    with torch.inference_mode():
        logits = model(**batch).logits.float()
    token_logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(
        -1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    width = token_logp.shape[1]
    return [(float(token_logp[row, width - int(n):].sum()), int(n)) if n > 0 else (float("-inf"), 0)
            for row, n in enumerate(lengths)]


class VQAEvaluator:
    """Evaluates a local VLM folder on VQA samples (see the module docstring)."""

    def __init__(self, options: VQAEvaluatorOptions | None = None):
        self.options = options or VQAEvaluatorOptions()

    def prompt(self, sample: VQASample, fmt: str) -> str:
        """The prompt for one sample."""
        if self.options.prompt in PROTOCOL_PROMPTS:
            return PROTOCOL_PROMPTS[self.options.prompt](sample)
        from medgr2.answers import build_prompt

        return build_prompt(sample, fmt)

    def cache_key(self, model_path: Path, context: StageContext) -> str:
        """What the cached partial predictions depend on: the model files (name, size, mtime), the
        prompt, answer format and generation settings."""
        from medgr2.store import hash_data

        files = sorted(
            (f.name, f.stat().st_size, f.stat().st_mtime_ns)
            for f in Path(model_path).iterdir()
            if f.is_file()
        )
        o = self.options
        settings = [str(model_path), files, self.answer_format(context), o.prompt, o.max_new_tokens,
                    o.option_scores]
        if o.mode != "generate":  # generate-mode keys stay as they were (their caches remain valid)
            settings += [o.mode, o.likelihood_norm]
        return hash_data(settings)

    def predict(
        self,
        samples: Sequence[VQASample],
        model_path: Path,
        context: StageContext,
        partial: Path | None = None,
    ) -> list[Prediction]:
        """Generate an answer (and optionally option scores) for every sample, in batches.

        With ``partial`` (a JSONL path), every finished batch is appended there (fsync'd) and a
        later call with the same :meth:`cache_key` only predicts the samples still missing, so an
        evaluation killed midway resumes. Stops early, keeping the finished batches, when
        ``context.stop`` is set.
        """
        if not Path(model_path).is_dir():
            raise FileNotFoundError(
                f"model folder {str(model_path)!r} does not exist (build a tiny one with "
                "`medgr2 models tiny --out DIR` or point to a saved checkpoint)"
            )
        done: dict[str, Prediction] = {}
        appender = None
        if partial is not None:
            key_file = partial.with_suffix(".key")
            key = self.cache_key(model_path, context)
            if key_file.is_file() and key_file.read_text() == key:
                done = {p.question_id: p for p in read_jsonl(partial, Prediction)}
            else:
                partial.unlink(missing_ok=True)
                atomic_write_text(key_file, key)
            appender = JsonlAppender(partial)
        todo = [s for s in samples if s.id not in done]
        try:
            if todo:
                for batch_preds in self._generate(todo, model_path, context):
                    if appender is not None:
                        appender.append_many(batch_preds)
                    done.update((p.question_id, p) for p in batch_preds)
        finally:
            if appender is not None:
                appender.close()
        return [done[s.id] for s in samples if s.id in done]

    def _generate(
        self, samples: Sequence[VQASample], model_path: Path, context: StageContext
    ) -> Iterator[list[Prediction]]:
        """Yield the predictions of each finished batch."""
        import torch

        from medgr2.images import open_image
        from medgr2_hf.vlm import generate, load_vlm, score_options

        opts = self.options
        fmt = self.answer_format(context)
        if opts.num_threads:
            torch.set_num_threads(opts.num_threads)
        model, processor = load_vlm(model_path, device=opts.device)
        if opts.mode == "likelihood":
            yield from self._likelihood(samples, model, processor, fmt, context)
            return
        with context.reporter.task("evaluate", total=len(samples)) as task:
            for start in range(0, len(samples), opts.batch_size):
                if context.stop.is_set():
                    return
                batch = list(samples[start : start + opts.batch_size])
                images = [[open_image(ref, context.registry) for ref in s.images] for s in batch]
                images = [ims[0] if len(ims) == 1 else ims for ims in images]
                texts = [self.prompt(s, fmt) for s in batch]
                raws = generate(
                    model,
                    processor,
                    images,
                    texts,
                    max_new_tokens=opts.max_new_tokens,
                    batch_size=opts.batch_size,
                )
                out = []
                for s, im, text, raw in zip(batch, images, texts, raws, strict=True):
                    scores = (
                        tuple(score_options(model, processor, im, text, option_targets(s, fmt, opts.prompt)))
                        if opts.option_scores
                        else None
                    )
                    out.append(
                        Prediction(
                            question_id=s.id,
                            question=s.question,
                            options=s.options,
                            gt_answer=s.answer,
                            model_answer=read_answer(raw, fmt) if opts.prompt == "format" else raw,
                            raw_answer=raw,
                            modality=s.modality.value,
                            question_type=s.question_type.value,
                            dataset=s.provenance.source_dataset or None,
                            option_scores=scores,
                        )
                    )
                task.advance(len(batch))
                yield out

    def _likelihood(
        self, samples: Sequence[VQASample], model: Any, processor: Any, fmt: str, context: StageContext
    ) -> Iterator[list[Prediction]]:
        """Yield each batch's predictions under the likelihood protocol (see the module docstring)."""
        from medgr2.data import LETTERS
        from medgr2.images import open_image

        opts = self.options
        with context.reporter.task("evaluate (likelihood)", total=len(samples)) as task:
            for start in range(0, len(samples), opts.batch_size):
                if context.stop.is_set():
                    return
                out = []
                for s in samples[start : start + opts.batch_size]:
                    ims = [open_image(ref, context.registry) for ref in s.images]
                    image = ims[0] if len(ims) == 1 else ims
                    text = self.prompt(s, fmt)
                    scored = option_loglik(model, processor, image, text, option_targets(s, fmt, opts.prompt))
                    scores = tuple(
                        total / max(n, 1) if opts.likelihood_norm == "mean" else total for total, n in scored
                    )
                    best = pick_option(scores)
                    out.append(
                        Prediction(
                            question_id=s.id,
                            question=s.question,
                            options=s.options,
                            gt_answer=s.answer,
                            model_answer=s.options[best],
                            raw_answer=f"likelihood: {LETTERS[best]}",
                            modality=s.modality.value,
                            question_type=s.question_type.value,
                            dataset=s.provenance.source_dataset or None,
                            option_scores=scores,
                        )
                    )
                task.advance(len(out))
                yield out

    def answer_format(self, context: StageContext) -> str:
        """The answer format: the option, else the run's ``policy.answer_format``, else ``text``."""
        return self.options.answer_format or context.answer_format or "text"

    def evaluate(
        self, samples: Sequence[VQASample], model_path: Path, output_dir: Path, context: StageContext
    ) -> EvalReport:
        """Predict every sample, score under ``context.scorer`` (else the option, else
        ``medgr2``), write predictions.jsonl, report.json and report.md under ``output_dir``."""
        from medgr2_eval.prediction_files import resolve_scorer, score_predictions
        from medgr2_eval.report import write_report

        if not samples:
            raise ValueError("no samples to evaluate")
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        scorer = context.scorer or self.options.scorer or "medgr2"
        resolve_scorer(scorer, context.registry)  # an unknown scorer fails now, not after generation
        started = time.perf_counter()
        partial = output_dir / "predictions.partial.jsonl"
        preds = self.predict(samples, Path(model_path), context, partial=partial)
        wall = time.perf_counter() - started
        write_jsonl(output_dir / artifacts.PREDICTIONS, preds)
        if len(preds) == len(samples):  # complete: the resume cache is no longer needed
            partial.unlink(missing_ok=True)
            partial.with_suffix(".key").unlink(missing_ok=True)
        if not preds:
            raise RuntimeError("evaluation stopped before the first batch finished: no predictions")
        report = score_predictions(
            preds,
            scorer,
            registry=context.registry,
            bootstrap=self.options.bootstrap,
            seed=self.options.seed,
            model=str(model_path),
        )
        meta = {
            **report.meta,
            "answer_format": self.answer_format(context),
            "prompt": self.options.prompt,
            "mode": self.options.mode,
            **({"likelihood_norm": self.options.likelihood_norm}
               if self.options.mode == "likelihood" else {}),
            "n_samples": len(samples),
            "stopped_early": len(preds) < len(samples),
            "predict_s": round(wall, 3),
        }
        report = report.model_copy(update={"meta": meta})
        write_report(report, output_dir)
        return report
