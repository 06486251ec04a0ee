"""The shared driver of API backends: prompts → request engine → validated samples or rejects.

A backend subclass supplies three things: :meth:`ApiGenerator.open_transport` (an ``async``
context giving the engine's transport, with SDK retries off), :meth:`ApiGenerator.payload`
(the SDK call's arguments for a prompt, images and an output schema) and ``name``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from medgr2 import __version__
from medgr2.data import GenerationResult, ImageRef, Reject, SeedItem, VQASample, stable_hash
from medgr2_generation.engine import (
    EngineOptions,
    Reply,
    RequestEngine,
    RequestFailed,
    ResponseCache,
    run_sync,
)
from medgr2.interfaces import StageContext
from medgr2_generation.backend_support import (
    EncodedImage,
    ImageCache,
    Outcomes,
    check_reply,
    content_error_reject,
    encode_image,
    build_sample,
    reject,
    restricted_reason,
)
from medgr2_generation.contract import SAMPLE_SCHEMA, SCHEMA_VERSION, ContractError, check_schema, parse_reply
from medgr2_generation.options import ApiOptions
from medgr2_generation.prompts import REASK, PromptTemplate, json_str as _encode_str, resolve_template

Transport = Callable[[Any], Any]


class ApiGenerator(abc.ABC):
    """Base of the API generators (``gemini``, ``openai``).

    ``generate(items, context)`` writes one multiple-choice sample per seed item;
    ``complete_json(prompts, schema, context)`` is the generic structured call other components
    (e.g. an LLM judge) use: each prompt is ``(text, images)``, each result the decoded JSON
    object that satisfies ``schema`` or a :class:`~medgr2.data.Reject` with the reason. Both are
    resumable (replies are cached by request), honour ``context.stop``, and re-ask an invalid
    reply once with the validation error. After each call, ``last_ledger`` holds its
    :class:`~medgr2.data.Ledger` (requests, retries, tokens, cost, ``content_rejects`` and
    ``transport_failures`` ...).

    Rejects by cause: a content reject (a reply that breaks the schema or the contract, or a
    request the server refused for this one prompt: ``request_refused``) is final, since its reply is
    cached, unless ``retry_rejects`` is set; a transport failure (``request_failed``: retries
    exhausted) is never cached, so the next run asks again. A permanent error (wrong key,
    unknown model, every request invalid) raises :class:`~medgr2_generation.errors.PermanentError` after
    the requests in flight: nothing is returned, so the stage is not complete.
    """

    name = "api"
    external = True

    def __init__(self, options: ApiOptions):
        self.options = options
        self.last_ledger = None
        self._retried = 0
        self._bank_version: str | None = None
        self._images: ImageCache | None = None

    # ------------------------------------------------------------------ backend hooks
    @abc.abstractmethod
    def open_transport(self) -> contextlib.AbstractAsyncContextManager[Transport]:
        """An async context manager yielding ``async payload -> Reply`` (SDK client inside)."""

    @abc.abstractmethod
    def payload(self, prompt: str, images: Sequence[EncodedImage], schema: dict[str, Any] | None) -> Any:
        """The arguments of one SDK call."""

    def request_body(self, prompt: str, images: Sequence[EncodedImage], schema: dict[str, Any] | None) -> Any:
        """What the transport is given for one request, built once per request (retries reuse it):
        :meth:`payload` unless a backend sends it pre-encoded."""
        return self.payload(prompt, images, schema)

    # ------------------------------------------------------------------ shared machinery
    def params(self) -> dict[str, Any]:
        """Generation parameters that change replies (part of every cache key)."""
        o = self.options
        return {
            "temperature": o.temperature,
            "max_output_tokens": o.max_output_tokens,
            "structured": o.structured_output,
            "image": [o.max_image_side, o.max_image_pixels, o.max_image_bytes, o.image_format],
            # the exemplar bank version: replies are never reused across versions, even for a prompt
            # whose modality has the same exemplars in both (absent without a bank: keys unchanged)
            **({"exemplar_bank": self._bank_version} if self._bank_version else {}),
        }

    def _key(self, prompt: str, images: Sequence[ImageRef], schema_version: str) -> str:
        """:func:`~medgr2_generation.engine.request_key` over the backend, model, prompt, image keys, params
        and schema version, exactly, with everything but the prompt and the image keys JSON-encoded once
        (:meth:`_key_frame`)."""
        head, mid, tail = self._key_frame(schema_version)
        blob = f"{head}[{', '.join([_encode_str(i.key) for i in images])}]{mid}{_encode_str(prompt)}{tail}"
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]

    def _key_frame(self, schema_version: str) -> tuple[str, str, str]:
        """The JSON that :func:`~medgr2.data.stable_hash` hashes for a request key, split where the image
        keys and the prompt go (cached per schema version, options and exemplar bank version)."""
        memo = self.__dict__.setdefault("_key_memo", {})
        hit = memo.get(schema_version)
        if hit is not None and hit[0] is self.options and hit[1] == self._bank_version:
            return hit[2]
        images, prompt = "\x00medgr2-images\x00", "\x00medgr2-prompt\x00"
        parts = {"backend": self.name, "model": self.options.model, "prompt": prompt, "images": images,
                 "params": self.params(), "schema": schema_version}
        blob = json.dumps((parts,), sort_keys=True, default=str, ensure_ascii=False)
        head, _, rest = blob.partition(_encode_str(images))
        mid, _, tail = rest.partition(_encode_str(prompt))
        memo[schema_version] = (self.options, self._bank_version, (head, mid, tail))
        return head, mid, tail

    def _engine(self, transport: Transport, context: StageContext, cache: ResponseCache) -> RequestEngine:
        o = self.options
        eo = EngineOptions(
            concurrency=o.concurrency,
            rpm=o.rpm,
            tpm=o.tpm,
            max_retries=o.max_retries,
            timeout_s=o.timeout_s,
            backoff_base_s=o.backoff_base_s,
            backoff_max_s=o.backoff_max_s,
            min_start_gap_s=o.min_start_gap_s,
            abort_after_invalid=o.abort_after_invalid,
        )
        return RequestEngine(
            transport,
            eo,
            cache=cache,
            prices=o.prices,
            model=o.model,
            stop=context.stop,
            seed=context.seed,
            explain=self.explain,
        )

    def _workers(self) -> int:
        """Jobs in flight: the concurrency plus a quarter more. HTTP attempts stay at ``concurrency`` (the
        engine's gate), but a job whose reply waits for the cache's fsync, or for a retry's backoff, does not
        keep the next request from starting."""
        return self.options.concurrency + max(2, self.options.concurrency // 4)

    def key_hint(self) -> str:
        """Where this backend reads its API key from (for error messages)."""
        return "the API key"

    def explain(self, kind: str) -> str:
        """What to change after a permanent error of ``kind`` (see :class:`~medgr2_generation.errors.PermanentError`)."""
        o = self.options
        where = f" at {o.base_url}" if o.base_url else ""
        if kind == "auth":
            return f"set a valid key in {self.key_hint()} (the server{where} refused it)"
        if kind == "model":
            return (
                f"the model {o.model!r} is not served{where}: set generation.generator.options.model to a model "
                "this server has (and check base_url)"
            )
        return (
            f"the server{where} refuses the requests for model {o.model!r} as invalid: check that the model takes "
            "images and JSON-schema output (structured_output: false otherwise) and the image caps"
        )

    def _cache(self, context: StageContext) -> ResponseCache:
        path = (
            Path(self.options.cache_path) if self.options.cache_path else context.work_dir / "requests.jsonl"
        )
        return ResponseCache(path)

    def _close_images(self) -> None:
        if self._images is not None:
            self._images.close()
            self._images = None

    def _encoder(self, refs: Sequence[ImageRef], context: StageContext) -> Callable[[], Any]:
        """The lazy async image encoder of one job: each image through the run's :class:`ImageCache`
        (encoded once per run, in a worker thread), only when a request is sent."""
        images = self._images
        if images is None or images.registry is not context.registry:
            o = self.options
            images = self._images = ImageCache(
                lambda ref: encode_image(ref, max_side=o.max_image_side, max_pixels=o.max_image_pixels,
                                         max_bytes=o.max_image_bytes, fmt=o.image_format, registry=context.registry),
                context.registry,
            )

        async def encoded() -> list[EncodedImage]:
            return [await images.get(r) for r in refs]

        def ready() -> list[EncodedImage] | None:
            done = [images.peek(r) for r in refs]
            return None if None in done else done  # type: ignore[return-value]

        encoded.ready = ready  # type: ignore[attr-defined]
        return encoded

    async def _ask(
        self,
        engine: RequestEngine,
        prompt: str,
        refs: Sequence[ImageRef],
        images: Callable[[], Any],
        schema: dict[str, Any],
        schema_version: str,
        check: Callable[[Reply], Any] | None = None,
    ) -> Reply:
        """The reply to ``prompt``; with ``retry_rejects`` and a ``check``, a cached reply that fails
        the check is not used: the prompt is sent again (counted in ``retried_rejects``)."""
        est = len(prompt) // 4 + 300 * len(refs) + self.options.max_output_tokens
        sent_schema = schema if self.options.structured_output else None
        key = self._key(prompt, refs, schema_version)
        use_cache = True
        if self.options.retry_rejects and check is not None and (hit := engine.peek(key)) is not None:
            try:
                check(hit)
            except ContractError:
                use_cache = False
                self._retried += 1

        peek = getattr(images, "ready", None)

        def build() -> Any:
            ready = peek() if peek is not None else None  # every image encoded already: the body now, no await
            if ready is not None:
                return self.request_body(prompt, ready, sent_schema)
            return built()

        async def built() -> Any:
            return self.request_body(prompt, await images(), sent_schema)

        return await engine.request(key, build, est, use_cache=use_cache)

    async def _ask_valid(
        self,
        engine: RequestEngine,
        prompt: str,
        refs: Sequence[ImageRef],
        images: Callable[[], Any],
        schema: dict[str, Any],
        schema_version: str,
        check: Callable[[Reply], Any],
    ) -> tuple[Any, Reply, bool]:
        """Ask, validate, and re-ask once with the error; returns (checked value, reply, re-asked)."""
        reply = await self._ask(engine, prompt, refs, images, schema, schema_version, check)
        try:
            return check(reply), reply, False
        except ContractError as exc:
            if not self.options.reask:
                raise
            follow = REASK.format(prompt=prompt, error=exc, reply=reply.text[:4000])
            reply = await self._ask(engine, follow, refs, images, schema, schema_version, check)
            try:
                return check(reply), reply, True
            except ContractError as exc2:
                exc2.reasked = True  # type: ignore[attr-defined]
                raise exc2 from exc

    # ------------------------------------------------------------------ Generator
    def generate(self, items: Sequence[SeedItem], context: StageContext) -> GenerationResult:
        """Generate one sample per seed item (see the class docstring)."""
        out = Outcomes(len(items))
        ledger = self.generate_to(items, context, None, _out=out)
        return GenerationResult(samples=tuple(out.samples()), rejects=tuple(out.rejects()), ledger=ledger)

    def generate_to(
        self,
        items: Sequence[SeedItem],
        context: StageContext,
        sink: Callable[[VQASample | Reject], None] | None,
        *,
        _out: Outcomes | None = None,
    ) -> Any:
        """Generate like :meth:`generate`, but hand each result (sample or reject) to ``sink`` in input
        order as soon as it and every one before it are done, keeping none: memory stays flat in the
        number of items (``items`` may be a lazy sequence). Returns the run's :class:`~medgr2.data.Ledger`."""
        template = resolve_template(self.options.strategy, self.options.template_path, context.registry)
        template = self._with_bank(template)
        self._bank_version = template.bank_version
        if not (hasattr(items, "__len__") and hasattr(items, "__getitem__")):
            items = list(items)  # an iterator; a sequence (lazy or not) is indexed as the jobs need it
        out = _out if _out is not None else Outcomes(len(items), sink=sink)
        try:
            return run_sync(self._generate(items, context, template, out))
        finally:
            self._bank_version = None
            self._close_images()

    def _with_bank(self, template: PromptTemplate) -> PromptTemplate:
        """``template`` with the ``exemplar_bank`` option's exemplars (unchanged without one)."""
        o = self.options
        if not o.exemplar_bank:
            return template
        from medgr2_generation.exemplars import load_bank

        excludes = None if o.allow_restricted else o.restricted_datasets
        return template.with_bank(load_bank(o.exemplar_bank), o.exemplars_per_prompt, excludes)

    async def _generate(
        self, items: Sequence[SeedItem], context: StageContext, template: PromptTemplate, out: Outcomes
    ) -> Any:
        cache = self._cache(context)
        assert context.reporter is not None
        started = time.perf_counter()
        self._retried = 0
        try:
            async with self.open_transport() as transport:
                engine = self._engine(transport, context, cache)
                with context.reporter.task(f"generate ({self.name})", total=len(items)) as task:
                    out.task = task
                    s = engine.stats

                    async def job(index: int) -> VQASample | Reject:
                        return await self._one(engine, items[index], template, context)

                    shown = [0.0]  # when the progress figures were last refreshed
                    n_items = len(items)

                    def done(index: int, result: Any) -> None:
                        if isinstance(result, BaseException):
                            result = reject(items[index].id, "error", f"{type(result).__name__}: {result}")
                        now = time.perf_counter()
                        if now - shown[0] < 0.2 and out.successes + out.content_rejects + out.transport_failures + 1 < n_items:
                            out.add(index, result)  # the figures are refreshed 5 times a second at most
                            return
                        shown[0] = now
                        out.add(
                            index,
                            result,
                            requests=s.requests,
                            req_s=f"{s.requests / max(now - started, 1e-9):.1f}",
                            tokens=s.input_tokens + s.output_tokens,
                            cost=f"${engine.cost(s.input_tokens, s.output_tokens):.4f}",
                        )

                    try:
                        finished = await engine.run_jobs(range(len(items)), job, done, workers=self._workers())
                    finally:
                        out.flush_progress()
                        out.task = None
                        out.finish()
        finally:
            cache.close()
        ledger = engine.ledger(
            "generate",
            successes=out.successes,
            rejects=out.reasons,
            items=len(items),
            completed=finished,
            backend=self.name,
            prompt_strategy=template.name,
            retried_rejects=self._retried,
            generator_version=template.generator_version(__version__),
            exemplar_bank=template.bank_version,
            **out.causes(),
        )
        self.last_ledger = ledger
        return ledger

    async def _one(
        self, engine: RequestEngine, item: SeedItem, template: PromptTemplate, context: StageContext
    ) -> VQASample | Reject:
        if self.external and not self.options.allow_restricted:
            why = restricted_reason(item, self.options.restricted_datasets)
            if why:
                return reject(
                    item.id,
                    "restricted_source",
                    f"{why}: not sent to the external backend {self.name!r} (allow_restricted=false)",
                )
        prompt = template.render_encoded(item)  # its JSON string made on the way, for json_str
        template_hash = template.hash(prompt)  # now, while the prompt's JSON is at hand (json_str)
        images = self._encoder([item.image], context)
        try:
            fields, reply, _ = await self._ask_valid(
                engine, prompt, [item.image], images, SAMPLE_SCHEMA, SCHEMA_VERSION, check_reply
            )
        except ContractError as exc:
            return content_error_reject(item.id, exc, getattr(exc, "reasked", False))
        except RequestFailed as exc:
            return reject(item.id, "request_refused" if exc.final else "request_failed", str(exc))
        except OSError as exc:
            return reject(item.id, "image_unreadable", f"{type(exc).__name__}: {exc}")
        return build_sample(item, fields, reply, generator=self.name, model=self.options.model,
                            template=template, prompt=prompt, context=context,
                            template_hash=template_hash)

    # ------------------------------------------------------------------ generic structured calls
    def screen(self, samples: Sequence[Any]) -> list[str | None]:
        """Why each sample must not be sent to this backend as a judge (``None``: it may), by the same rule as
        generation: an external backend never receives restricted data unless ``allow_restricted`` is set
        (a sample tagged ``restricted``, or one from a dataset in ``restricted_datasets``)."""
        if not self.external or self.options.allow_restricted:
            return [None] * len(samples)
        out: list[str | None] = []
        for s in samples:
            if "restricted" in s.tags:
                out.append(f"sample {s.id} is tagged restricted")
            elif s.provenance.source_dataset in self.options.restricted_datasets:
                out.append(f"dataset {s.provenance.source_dataset!r} is listed in restricted_datasets")
            else:
                out.append(None)
        return out

    def complete_json(
        self, prompts: Sequence[tuple[str, Sequence[ImageRef]]], schema: dict[str, Any], context: StageContext
    ) -> list[dict[str, Any] | Reject]:
        """One JSON object per ``(prompt, images)`` that satisfies ``schema``, or a Reject (stage
        ``complete_json``, id ``prompt-<i>``) with the reason. Cached and resumable like
        :meth:`generate`; images go through the same guard-free encoder (callers decide what to send)."""
        try:
            return run_sync(self._complete_json(list(prompts), schema, context))
        finally:
            self._close_images()

    async def _complete_json(
        self, prompts: list[tuple[str, Sequence[ImageRef]]], schema: dict[str, Any], context: StageContext
    ) -> list[dict[str, Any] | Reject]:
        cache = self._cache(context)
        version = "json/" + stable_hash(schema)
        self._retried = 0

        def check(reply: Reply) -> dict[str, Any]:
            data = parse_reply(reply.text, truncated=reply.truncated)
            check_schema(data, schema)
            return data

        results: dict[int, dict[str, Any] | Reject] = {}
        try:
            async with self.open_transport() as transport:
                engine = self._engine(transport, context, cache)

                async def job(i: int) -> dict[str, Any] | Reject:
                    text, refs = prompts[i]
                    try:
                        value, _, _ = await self._ask_valid(
                            engine,
                            text,
                            list(refs),
                            self._encoder(list(refs), context),
                            schema,
                            version,
                            check,
                        )
                        return value
                    except ContractError as exc:
                        return content_error_reject(
                            f"prompt-{i}", exc, getattr(exc, "reasked", False), "complete_json"
                        )
                    except RequestFailed as exc:
                        why = "request_refused" if exc.final else "request_failed"
                        return reject(f"prompt-{i}", why, str(exc), "complete_json")

                def done(i: int, result: Any) -> None:
                    if isinstance(result, BaseException):
                        result = reject(
                            f"prompt-{i}", "error", f"{type(result).__name__}: {result}", "complete_json"
                        )
                    results[i] = result

                await engine.run_jobs(range(len(prompts)), job, done, workers=self._workers())
        finally:
            cache.close()
        self.last_ledger = engine.ledger(
            "complete_json", successes=sum(isinstance(r, dict) for r in results.values()), rejects={}
        )
        return [
            results.get(i)
            or reject(f"prompt-{i}", "stopped", "the run was stopped before this prompt", "complete_json")
            for i in range(len(prompts))
        ]


@contextlib.asynccontextmanager
async def closing(clients: Sequence[Any], transport: Transport) -> AsyncIterator[Transport]:
    """Yield ``transport`` and close ``clients`` (SDK async clients) afterwards."""
    try:
        yield transport
    finally:
        for client in clients:
            close = getattr(client, "close", None) or getattr(client, "aclose", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result


def is_transport_error(exc: BaseException) -> bool:
    """True for network-level failures of httpx-like clients (timeouts, resets, refused connections)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "TransportError",
            "TimeoutException",
            "NetworkError",
            "RemoteProtocolError",
            "ConnectionError",
            "TimeoutError",
        }
    )
