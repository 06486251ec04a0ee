"""What every generation backend shares: image encoding, the restricted-source guard, turning a
reply into a sample or a reject, and the per-run bookkeeping (results in order, progress, ledger)."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
from base64 import b64encode
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from medgr2.data import ImageRef, Modality, Provenance, QuestionType, Reject, SeedItem, VQASample
from medgr2_generation.engine import Reply
from medgr2_generation.errors import redact
from medgr2_generation.contract import ContractError, parse_reply, validate_reply

TRUE = {"1", "true", "yes", "on", "restricted"}


@dataclass(frozen=True)
class EncodedImage:
    """An image ready to send inline."""

    data: bytes
    mime: str
    width: int
    height: int

    @cached_property
    def base64(self) -> str:
        """The bytes in base64 (computed once per image, however many requests send it)."""
        return b64encode(self.data).decode("ascii")

    @cached_property
    def data_url(self) -> str:
        """``data:<mime>;base64,...`` (computed once per image)."""
        return f"data:{self.mime};base64,{self.base64}"

    @cached_property
    def data_url_json(self) -> str:
        """:attr:`data_url` as a JSON string (computed once per image)."""
        return json.encoder.encode_basestring(self.data_url)


def encode_image(
    ref: Any, *, max_side: int, max_pixels: int, max_bytes: int, fmt: str = "jpeg", registry: Any = None
) -> EncodedImage:
    """Decode ``ref`` (via :func:`medgr2.images.open_image`) and re-encode it under the caps:
    longest side ``max_side``, ``max_pixels`` pixels and ``max_bytes`` bytes."""
    from PIL import Image

    from medgr2.images import open_image

    img = open_image(ref, registry)
    img = img.convert("RGB") if fmt == "jpeg" or img.mode not in ("L", "RGB") else img
    w, h = img.size
    scale = min(1.0, max_side / max(w, h), math.sqrt(max_pixels / (w * h)))
    quality = 90
    while True:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        out = img if size == img.size else img.resize(size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if fmt == "jpeg":
            out.save(buf, format="JPEG", quality=quality)
        else:
            out.save(buf, format="PNG", optimize=True)
        if buf.tell() <= max_bytes or max(size) <= 16:
            return EncodedImage(buf.getvalue(), f"image/{fmt}", *size)
        if fmt == "jpeg" and quality > 60:
            quality -= 15
        else:
            scale *= 0.75


class ImageCache:
    """The encoded images of one run, by image key (:attr:`medgr2.data.ImageRef.key`): each image is
    encoded once per run however many items, re-asks or retries send it (concurrent requests for the
    same image share one encoding), and the most recently used are kept under ``max_bytes``.

    ``encode(ref) -> EncodedImage`` runs in a worker thread; its error (an unreadable image) reaches
    every request of that image and is not kept.
    """

    def __init__(self, encode: Any, registry: Any = None, *, max_bytes: int = 32 * 1024 * 1024):
        self.encode, self.registry, self.max_bytes = encode, registry, max_bytes
        self._done: OrderedDict[str, EncodedImage] = OrderedDict()
        self._running: dict[str, asyncio.Future[EncodedImage]] = {}
        self._bytes = 0
        self._pool: ThreadPoolExecutor | None = None  # cores-many threads (PIL releases the GIL), not asyncio's 6+
        self.encoded = 0
        """Images encoded so far (a measure of reuse)."""

    def peek(self, ref: Any) -> EncodedImage | None:
        """The encoded image if it is done (counted as used, like :meth:`get`), else ``None``."""
        key = ref.key
        img = self._done.get(key)
        if img is not None:
            self._done.move_to_end(key)
        return img

    async def get(self, ref: Any) -> EncodedImage:
        key = ref.key
        img = self._done.get(key)
        if img is not None:
            self._done.move_to_end(key)
            return img
        task = self._running.get(key)
        if task is None:  # one encoding per image; a waiter's cancellation does not cancel it
            task = self._running[key] = asyncio.ensure_future(self._encode(key, ref))
        return await asyncio.shield(task)

    async def _encode(self, key: str, ref: Any) -> EncodedImage:
        if self._pool is None:  # first come, first served: the first requests' images are ready first
            self._pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="medgr2-img")
        try:
            img = await asyncio.get_running_loop().run_in_executor(self._pool, self.encode, ref)
        finally:
            del self._running[key]
        self.encoded += 1
        size = len(img.data) * 7 // 3  # the bytes and their base64
        if size <= self.max_bytes:
            self._done[key] = img
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._done.popitem(last=False)
                self._bytes -= len(old.data) * 7 // 3
        return img


    def close(self) -> None:
        """Stop the encoding threads (the run is over)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def restricted_reason(item: SeedItem, restricted_datasets: Sequence[str]) -> str | None:
    """Why ``item`` must not go to an external backend, or ``None`` when it may."""
    if str(item.labels.get("restricted", "")).strip().lower() in TRUE:
        return f"item {item.id} is labelled restricted"
    if item.dataset in restricted_datasets:
        return f"dataset {item.dataset!r} is listed in restricted_datasets"
    return None


def check_reply(reply: Reply) -> dict[str, Any]:
    """Parse and validate a reply (raises :class:`~medgr2_generation.contract.ContractError`)."""
    return validate_reply(parse_reply(reply.text, truncated=reply.truncated))


def build_sample(
    item: SeedItem,
    fields: dict[str, Any],
    reply: Reply,
    *,
    generator: str,
    model: str,
    template: Any,
    prompt: str,
    context: Any,
    template_hash: str | None = None,
) -> VQASample | Reject:
    """The sample for ``item`` from validated reply fields, with its provenance, or a reject naming why
    the fields do not make a valid sample. ``created_at`` is the reply's time, so resumed runs reproduce it.
    ``template_hash``: ``template.hash(prompt)`` when the caller has it already."""
    from medgr2 import __version__

    prov_values = {
        "source_dataset": item.dataset,
        "source_id": item.id,
        "generator": generator,
        "generator_version": template.generator_version(__version__) if hasattr(template, "generator_version")
        else __version__,
        "model_id": model,
        "prompt_strategy": template.strategy,
        "template_hash": template_hash or template.hash(prompt),
        "cycle": context.cycle,
        "seed": context.seed,
        "created_at": datetime.fromisoformat(reply.created_at),
    }
    sample = checked_sample(item, fields, prov_values)
    if sample is not None:
        return sample
    try:  # something the quick check does not vouch for: pydantic decides (and words the reject)
        return VQASample(images=(item.image,), provenance=Provenance(**prov_values), split=item.split,
                         subject_id=item.subject_id, **fields)
    except ValueError as exc:
        return reject(item.id, "invalid_sample", str(exc))


_FIELD_NAMES = frozenset({"question", "options", "answer", "rationale", "modality", "question_type"})
_SAMPLE_SET = frozenset({"images", "provenance", "split", "subject_id", *_FIELD_NAMES})
_SPLITS = frozenset({"train", "val", "test"})
_set = object.__setattr__


def _made(cls: type, values: dict[str, Any], fields_set: frozenset[str]) -> Any:
    """An instance of ``cls`` holding ``values`` (every field, in field order), as
    ``cls.model_construct(set(fields_set), **values)`` makes it, without its per-field Python loop."""
    obj = cls.__new__(cls)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", set(fields_set))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def _plain(cls: type) -> bool:
    """``cls`` is a model that :func:`_made` builds as pydantic would: no extras kept, no private attributes,
    no post-init hook, fields as :func:`checked_sample` lists them."""
    return (cls.model_config.get("extra") != "allow" and not cls.__private_attributes__
            and not cls.__pydantic_post_init__)


_PROV_ORDER = ("source_dataset", "source_id", "generator", "generator_version", "model_id", "prompt_strategy",
               "template_hash", "cycle", "seed", "created_at")
_SAMPLE_ORDER = ("id", "images", "question", "options", "answer", "rationale", "modality", "question_type",
                 "provenance", "reward", "split", "subject_id", "tags")


def _rules(cls: type) -> tuple[Any, ...]:
    """What validation of ``cls`` enforces beyond types: its validators' names and its fields' constraints."""
    decorators = cls.__pydantic_decorators__
    return (sorted(decorators.field_validators), sorted(decorators.model_validators),
            {name: [repr(m) for m in f.metadata] for name, f in cls.model_fields.items() if f.metadata})


_SAMPLE_RULES = (["_options_unique", "_question_not_blank"], ["_answer_and_id"],
                 {"images": ["MinLen(min_length=1)"], "question": ["MinLen(min_length=1)"],
                  "options": ["MinLen(min_length=2)", "MaxLen(max_length=8)"]})
_PROV_RULES: tuple[Any, ...] = ([], [], {"cycle": ["Ge(ge=0)"]})
_FAST = (_plain(VQASample) and _plain(Provenance) and tuple(VQASample.model_fields) == _SAMPLE_ORDER
         and tuple(Provenance.model_fields) == (*_PROV_ORDER, "raw")
         and _rules(VQASample) == _SAMPLE_RULES and _rules(Provenance) == _PROV_RULES)
"""The models are as :func:`checked_sample` knows them: the same fields in the same order, and the same
validators and constraints, which it re-checks (a new rule turns the fast path off: it then always defers to
validation, and ``test_gen_fastpaths`` says so)."""
_PROV_SET = frozenset(_PROV_ORDER)


def _texts(values: Any) -> bool:
    """Every value is a ``str`` that pydantic keeps as it is (UTF-8 encodable: a lone surrogate, which a
    JSON ``\\ud800`` escape makes, is refused by pydantic's string validation)."""
    for v in values:
        if v.__class__ is not str:
            return False
        if not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def checked_sample(item: SeedItem, fields: dict[str, Any], prov: dict[str, Any]) -> VQASample | None:
    """The sample that ``VQASample(images=(item.image,), provenance=Provenance(**prov), split=item.split,
    subject_id=item.subject_id, **fields)`` makes, equal to it field for field (and in the fields it counts
    as set), when every value is one that validation keeps as it is and every rule of the two models holds
    (checked here: exact types, strings pydantic accepts, the question not blank, 2-8 options, none blank,
    unique after strip and lower-casing, the answer among them, the split one of the three, the cycle not
    negative); ``None`` otherwise, and the caller validates. The fields come from
    :func:`~medgr2_generation.contract.validate_reply`, which checked the sample's rules already: validating
    them a second time through pydantic cost more than the rest of building the sample."""
    if not _FAST or fields.keys() != _FIELD_NAMES or tuple(prov) != _PROV_ORDER:  # (the models' field order)
        return None
    question, options, answer, rationale = fields["question"], fields["options"], fields["answer"], fields["rationale"]
    image, split, subject, p = item.image, item.split, item.subject_id, prov
    model_id, strategy, template_hash = p["model_id"], p["prompt_strategy"], p["template_hash"]
    if not (options.__class__ is tuple and 2 <= len(options) <= 8
            and fields["modality"].__class__ is Modality and fields["question_type"].__class__ is QuestionType
            and image.__class__ is ImageRef
            and (split is None or (split.__class__ is str and split in _SPLITS))
            and _texts((question, answer, rationale, *options, p["source_dataset"], p["source_id"], p["generator"],
                        p["generator_version"], *[v for v in (subject, model_id, strategy, template_hash) if v is not None]))
            and question.strip() and answer in options
            and p["cycle"].__class__ is int and p["cycle"] >= 0 and (p["seed"] is None or p["seed"].__class__ is int)
            and p["created_at"].__class__ is datetime):
        return None
    norm = [o.strip().lower() for o in options]
    if not all(norm) or len(set(norm)) != len(norm):
        return None
    provenance = _made(Provenance, {**p, "raw": {}}, _PROV_SET)
    values = {"id": "", "images": (image,), "question": question, "options": options, "answer": answer,
              "rationale": rationale, "modality": fields["modality"], "question_type": fields["question_type"],
              "provenance": provenance, "reward": None, "split": split, "subject_id": subject, "tags": ()}
    sample = _made(VQASample, values, _SAMPLE_SET)
    values["id"] = sample.content_id  # as VQASample's validator sets it
    return sample


TRANSPORT_REASONS = frozenset({"request_failed", "error", "stopped"})
"""Reject reasons that are not final: the item is asked again by the next run (never cached)."""


def is_final(reason: str) -> bool:
    """True for a reject that stands (a content reject: invalid reply, restricted source, unreadable
    image, a request the server refused); false for a transport failure (see :data:`TRANSPORT_REASONS`)."""
    return reason not in TRANSPORT_REASONS


def reject(item_id: str, reason: str, detail: str = "", stage: str = "generate") -> Reject:
    """A reject record (secrets redacted from the detail)."""
    return Reject(stage=stage, id=item_id, reason=reason, detail=redact(detail)[:2000])


@dataclass
class Outcomes:
    """Results of one run, handed on in input order, with the progress task updated as they arrive.

    With a ``sink``, each result goes to ``sink(result)`` as soon as it and every result before it are
    done, and nothing is kept but the counts and the results that finished ahead of an earlier one (a
    window of about the concurrency): memory stays flat in the number of items. Without one, results
    are collected for :meth:`samples` and :meth:`rejects`.
    """

    n: int
    task: Any = None
    sink: Callable[[VQASample | Reject], None] | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    successes: int = 0
    content_rejects: int = 0
    transport_failures: int = 0
    _ahead: dict[int, VQASample | Reject] = field(default_factory=dict)
    _next: int = 0
    _samples: list[VQASample] = field(default_factory=list)
    _rejects: list[Reject] = field(default_factory=list)
    _steps: dict[str, int] = field(default_factory=dict)  # progress not yet given to the task

    def add(self, index: int, result: VQASample | Reject, **fields: Any) -> None:
        """Count ``result`` and hand it on in order. The progress task gets the counts when ``fields`` come
        (the caller's refresh: a few times a second) and at :meth:`flush_progress`, not one call per result."""
        if isinstance(result, Reject):
            self.reasons[result.reason] += 1
            failed = not is_final(result.reason)
            self.transport_failures += failed
            self.content_rejects += not failed
            step = "failed" if failed else "rejected"
        else:
            self.successes += 1
            step = "done"
        if self.task is not None:
            self._steps[step] = self._steps.get(step, 0) + 1
            if fields:
                self.flush_progress()
                self.task.update(**fields)
        if index != self._next:
            self._ahead[index] = result
            return
        self._hand_on(result)
        self._next += 1
        while self._ahead and self._next in self._ahead:
            self._hand_on(self._ahead.pop(self._next))
            self._next += 1

    def flush_progress(self) -> None:
        """Give the progress task the results counted since the last refresh (``advance(n, done=.., ...)``)."""
        if self.task is not None and self._steps:
            steps, self._steps = self._steps, {}
            self.task.advance(sum(steps.values()), **steps)

    def _hand_on(self, result: VQASample | Reject) -> None:
        if self.sink is not None:
            self.sink(result)
        elif isinstance(result, Reject):
            self._rejects.append(result)
        else:
            self._samples.append(result)

    def finish(self) -> None:
        """Hand on the results still waiting for an earlier one that never came (a stopped run)."""
        for index in sorted(self._ahead):
            self._hand_on(self._ahead.pop(index))

    def samples(self) -> list[VQASample]:
        self.finish()
        return self._samples

    def rejects(self) -> list[Reject]:
        self.finish()
        return self._rejects

    def causes(self) -> dict[str, int]:
        """Rejects by cause: ``content_rejects`` (final) and ``transport_failures`` (asked again next run)."""
        return {"content_rejects": self.content_rejects, "transport_failures": self.transport_failures}


def content_error_reject(item_id: str, exc: ContractError, reasked: bool, stage: str = "generate") -> Reject:
    """The reject for a reply that stayed invalid."""
    return reject(item_id, exc.reason, ("after one re-ask: " if reasked else "") + str(exc), stage)
