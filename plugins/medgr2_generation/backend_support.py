"""What every generation backend shares: image encoding, the restricted-source guard, turning a
reply into a sample or a reject, and the per-run bookkeeping (results in order, progress, ledger)."""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from medgr2.data import Provenance, Reject, SeedItem, VQASample
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
) -> VQASample | Reject:
    """The sample for ``item`` from validated reply fields, with its provenance, or a reject naming why
    the fields do not make a valid sample. ``created_at`` is the reply's time, so resumed runs reproduce it."""
    from medgr2 import __version__

    prov = Provenance(
        source_dataset=item.dataset,
        source_id=item.id,
        generator=generator,
        generator_version=template.generator_version(__version__) if hasattr(template, "generator_version")
        else __version__,
        model_id=model,
        prompt_strategy=template.strategy,
        template_hash=template.hash(prompt),
        cycle=context.cycle,
        seed=context.seed,
        created_at=datetime.fromisoformat(reply.created_at),
    )
    try:
        return VQASample(images=(item.image,), provenance=prov, split=item.split, subject_id=item.subject_id,
                         **fields)
    except ValueError as exc:
        return reject(item.id, "invalid_sample", str(exc))


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
    """Results of one run, kept in input order, with the progress task updated as they arrive."""

    n: int
    task: Any = None
    results: dict[int, VQASample | Reject] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, index: int, result: VQASample | Reject, **fields: Any) -> None:
        self.results[index] = result
        if isinstance(result, Reject):
            self.reasons[result.reason] += 1
        if self.task is not None:
            failed = isinstance(result, Reject) and not is_final(result.reason)
            rejected = isinstance(result, Reject) and not failed
            self.task.advance(
                1, **({"failed": 1} if failed else {"rejected": 1} if rejected else {"done": 1})
            )
            if fields:
                self.task.update(**fields)

    def samples(self) -> list[VQASample]:
        return [r for _, r in sorted(self.results.items()) if isinstance(r, VQASample)]

    def rejects(self) -> list[Reject]:
        return [r for _, r in sorted(self.results.items()) if isinstance(r, Reject)]

    def causes(self) -> dict[str, int]:
        """Rejects by cause: ``content_rejects`` (final) and ``transport_failures`` (asked again next run)."""
        rejects = self.rejects()
        final = sum(is_final(r.reason) for r in rejects)
        return {"content_rejects": final, "transport_failures": len(rejects) - final}


def content_error_reject(item_id: str, exc: ContractError, reasked: bool, stage: str = "generate") -> Reject:
    """The reject for a reply that stayed invalid."""
    return reject(item_id, exc.reason, ("after one re-ask: " if reasked else "") + str(exc), stage)
