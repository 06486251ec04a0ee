"""The ``local`` generator: a transformers vision-language model folder, batched ``generate``.

Same output contract as the API backends (parse, validate, re-ask once, reject with a reason),
same reply cache (so re-runs only generate what is missing) and the same provenance. Nothing
leaves the machine, so the restricted-source guard does not apply.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgr2.data import GenerationResult, ImageRef, Ledger, Reject, SeedItem, stable_hash
from medgr2_generation.engine import Reply, ResponseCache, request_key
from medgr2.interfaces import StageContext
from medgr2_generation.backend_support import (
    Outcomes,
    check_reply,
    content_error_reject,
    build_sample,
    reject,
)
from medgr2_generation.contract import SCHEMA_VERSION, ContractError, check_schema, parse_reply
from medgr2_generation.options import LocalOptions
from medgr2_generation.prompts import REASK, resolve_template

CHUNK_BATCHES = 4
"""Items are processed (generated, checked, re-asked) in chunks of this many batches; progress
is reported and the stop event checked after each chunk."""


class LocalGenerator:
    """Generates VQA samples with a local transformers VLM (``model_path``), in batches.

    ``complete_json(prompts, schema, context) -> list[dict | Reject]`` runs arbitrary
    structured prompts (``(text, images)`` pairs) through the same model, for LLM judges.
    """

    name = "local"

    def __init__(self, options: LocalOptions):
        self.options = options
        self._loaded: tuple[Any, Any] | None = None
        self.last_ledger: Ledger | None = None

    # ------------------------------------------------------------------ model
    def folder(self) -> Path:
        """The model folder: ``model_path`` itself, or the cached snapshot of a Hub id (never downloaded)."""
        from medgr2.hub import resolve_model

        return resolve_model(self.options.model_path, what="generation model_path (local generator)")

    def model_id(self) -> str:
        """The folder plus a fingerprint of its files (name, size, mtime): changes when weights change."""
        folder = self.folder().resolve()
        files = sorted(
            (p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in folder.iterdir() if p.is_file()
        )
        return f"{folder}#{stable_hash(files)}"

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from medgr2_hf.vlm import load_vlm

            self._loaded = load_vlm(self.folder(), device=self.options.device)
        return self._loaded

    def _image(self, ref: ImageRef, context: StageContext) -> Any:
        from medgr2.images import open_image

        img = open_image(ref, context.registry).convert("RGB")
        img.thumbnail((self.options.max_image_side, self.options.max_image_side))
        return img

    def _run_batch(self, prompts: Sequence[str], images: Sequence[Any]) -> list[Reply]:
        import torch
        from medgr2_hf.vlm import build_inputs

        model, processor = self._model()
        o = self.options
        batch = build_inputs(processor, list(images), list(prompts), device=model.device)
        sampling = (
            {"do_sample": True, "temperature": o.temperature} if o.temperature > 0 else {"do_sample": False}
        )
        with torch.inference_mode():
            ids = model.generate(
                **batch,
                max_new_tokens=o.max_output_tokens,
                pad_token_id=processor.tokenizer.pad_token_id,
                **sampling,
            )
        new = ids[:, batch["input_ids"].shape[1] :]
        pad, eos = processor.tokenizer.pad_token_id, processor.tokenizer.eos_token_id
        replies = []
        for row, mask, text in zip(
            new, batch["attention_mask"], processor.batch_decode(new, skip_special_tokens=True)
        ):
            toks = [t for t in row.tolist() if t != pad]
            hit_limit = len(row) >= o.max_output_tokens and (not toks or toks[-1] != eos)
            replies.append(
                Reply(
                    text=text.strip(),
                    input_tokens=int(mask.sum()),
                    output_tokens=len(toks),
                    finish_reason="length" if hit_limit else "stop",
                )
            )
        return replies

    # ------------------------------------------------------------------ shared loop
    def _params(self) -> dict[str, Any]:
        o = self.options
        return {
            "temperature": o.temperature,
            "max_output_tokens": o.max_output_tokens,
            "side": o.max_image_side,
        }

    def _replies(
        self,
        jobs: Sequence[tuple[str, ImageRef]],
        schema_version: str,
        cache: ResponseCache,
        context: StageContext,
        stats: Counter[str],
        check: Any = None,
    ) -> list[Reply | None]:
        """Replies for ``(prompt, image)`` jobs: cached ones, then the misses in batches
        (``None`` for jobs not reached because ``context.stop`` was set). With ``retry_rejects``,
        a cached reply that fails ``check`` counts as a miss (``stats["retried_rejects"]``)."""
        model = self.model_id()
        keys = [
            request_key(
                backend=self.name,
                model=model,
                prompt=p,
                images=[r.key],
                params=self._params(),
                schema=schema_version,
            )
            for p, r in jobs
        ]
        out: list[Reply | None] = [cache.get(k) for k in keys]
        if self.options.retry_rejects and check is not None:
            for i, reply in enumerate(out):
                try:
                    if reply is not None:
                        check(reply)
                except ContractError:
                    out[i] = None
                    stats["retried_rejects"] += 1
        stats["cache_hits"] += sum(r is not None for r in out)
        todo = [i for i, r in enumerate(out) if r is None]
        for start in range(0, len(todo), self.options.batch_size):
            if context.stop.is_set():
                break
            idx = todo[start : start + self.options.batch_size]
            images = [self._image(jobs[i][1], context) for i in idx]
            for i, reply in zip(idx, self._run_batch([jobs[i][0] for i in idx], images)):
                cache.add(keys[i], reply)
                out[i] = reply
                stats["requests"] += 1
                stats["input_tokens"] += reply.input_tokens
                stats["output_tokens"] += reply.output_tokens
        return out

    def _validated(
        self,
        jobs: Sequence[tuple[str, ImageRef]],
        check: Any,
        schema_version: str,
        cache: ResponseCache,
        context: StageContext,
        stats: Counter[str],
    ) -> list[Any]:
        """Per job: ``(value, reply)``, a :class:`ContractError` (after one re-ask), or ``None`` (stopped)."""
        first = self._replies(jobs, schema_version, cache, context, stats, check)
        results: list[Any] = [None] * len(jobs)
        retry: list[int] = []
        for i, reply in enumerate(first):
            if reply is None:
                continue
            try:
                results[i] = (check(reply), reply)
            except ContractError as exc:
                results[i] = exc
                if self.options.reask:
                    retry.append(i)
        follow = [
            (REASK.format(prompt=jobs[i][0], error=results[i], reply=first[i].text[:4000]), jobs[i][1])
            for i in retry
        ]
        for i, reply in zip(retry, self._replies(follow, schema_version, cache, context, stats, check)):
            if reply is None:
                results[i] = None
                continue
            try:
                results[i] = (check(reply), reply)
            except ContractError as exc:
                exc.reasked = True  # type: ignore[attr-defined]
                results[i] = exc
        return results

    def _cache(self, context: StageContext) -> ResponseCache:
        path = (
            Path(self.options.cache_path) if self.options.cache_path else context.work_dir / "requests.jsonl"
        )
        return ResponseCache(path)

    # ------------------------------------------------------------------ Generator
    def generate(self, items: Sequence[SeedItem], context: StageContext) -> GenerationResult:
        """Generate one sample per seed item (cached and resumable; stops between batches)."""
        started = time.perf_counter()
        template = resolve_template(self.options.strategy, self.options.template_path, context.registry)
        items = list(items)
        prompts = [template.render(item) for item in items]
        cache, stats = self._cache(context), Counter[str]()
        assert context.reporter is not None
        out, stopped = Outcomes(len(items)), False
        step = self.options.batch_size * CHUNK_BATCHES
        with context.reporter.task(f"generate ({self.name})", total=len(items)) as task:
            out.task = task
            try:
                for start in range(0, len(items), step):
                    jobs = [(prompts[n], items[n].image) for n in range(start, min(start + step, len(items)))]
                    results = self._validated(jobs, check_reply, SCHEMA_VERSION, cache, context, stats)
                    for n, res in enumerate(results, start):
                        if res is None:
                            stopped = True
                            continue
                        out.add(
                            n,
                            self._sample(items[n], prompts[n], res, template, context),
                            requests=stats["requests"],
                            tokens=stats["input_tokens"] + stats["output_tokens"],
                        )
                    if context.stop.is_set():
                        stopped = stopped or start + step < len(items)
                        break
            finally:
                cache.close()
        ledger = Ledger(
            stage="generate",
            requests=stats["requests"],
            successes=len(out.samples()),
            rejects=dict(out.reasons),
            input_tokens=stats["input_tokens"],
            output_tokens=stats["output_tokens"],
            wall_s=round(time.perf_counter() - started, 3),
            extra={
                "cache_hits": stats["cache_hits"],
                "items": len(items),
                "backend": self.name,
                "completed": not stopped,
                "retried_rejects": stats["retried_rejects"],
                **out.causes(),
                "prompt_strategy": template.name,
                "model": self.options.model_path,
            },
        )
        self.last_ledger = ledger
        return GenerationResult(samples=tuple(out.samples()), rejects=tuple(out.rejects()), ledger=ledger)

    def _sample(self, item: SeedItem, prompt: str, res: Any, template: Any, context: StageContext) -> Any:
        if isinstance(res, ContractError):
            return content_error_reject(item.id, res, getattr(res, "reasked", False))
        fields, reply = res
        return build_sample(item, fields, reply, generator=self.name, model=self.options.model_path,
                            template=template, prompt=prompt, context=context)

    def screen(self, samples: Sequence[Any]) -> list[str | None]:
        """Every sample may be judged: a local model sends nothing off the machine."""
        return [None] * len(samples)

    def complete_json(
        self, prompts: Sequence[tuple[str, Sequence[ImageRef]]], schema: dict[str, Any], context: StageContext
    ) -> list[dict[str, Any] | Reject]:
        """One JSON object per ``(prompt, images)`` satisfying ``schema``, or a Reject with the reason.

        The local backend takes exactly one image per prompt."""
        bad = [i for i, (_, refs) in enumerate(prompts) if len(refs) != 1]
        if bad:
            raise ValueError(
                f"the local backend takes exactly one image per prompt; prompts {bad[:5]} do not"
            )

        def check(reply: Reply) -> dict[str, Any]:
            data = parse_reply(reply.text, truncated=reply.truncated)
            check_schema(data, schema)
            return data

        cache, stats = self._cache(context), Counter[str]()
        try:
            results = self._validated(
                [(p, refs[0]) for p, refs in prompts],
                check,
                "json/" + stable_hash(schema),
                cache,
                context,
                stats,
            )
        finally:
            cache.close()
        out: list[dict[str, Any] | Reject] = []
        for i, res in enumerate(results):
            if res is None:
                out.append(
                    reject(
                        f"prompt-{i}", "stopped", "the run was stopped before this prompt", "complete_json"
                    )
                )
            elif isinstance(res, ContractError):
                out.append(
                    content_error_reject(f"prompt-{i}", res, getattr(res, "reasked", False), "complete_json")
                )
            else:
                out.append(res[0])
        return out
