"""Prompt strategies: versioned template files rendered per seed item.

A template file has a header of ``# key: value`` lines (``strategy`` and ``version`` are
required), a ``---`` line, then the body with ``$placeholders`` (:class:`string.Template`, so
JSON braces need no escaping)::

    # strategy: direct
    # version: 1
    ---
    The attached image is a $modality image from "$dataset" ...

Placeholders: ``$dataset``, ``$modality``, ``$labels`` (one ``- key: value`` line each),
``$report`` (the item's free text, or nothing), ``$modalities``, ``$question_types``,
``$schema`` (the JSON schema of the reply), ``$exemplars`` (few-shot exemplars from an exemplar bank,
text only, or nothing: see :mod:`medgr2_generation.exemplars`; only ``meta_cognitive`` has it). The built-ins ``direct``, ``step_by_step`` and
``meta_cognitive`` are registered under the ``prompt`` kind; users override one by pointing a
generator's ``template_path`` option at their own file, or by registering the same name with
``override=True`` and a :class:`PromptTemplate` (or a ``pathlib.Path`` to a template file) as target.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from medgr2.data import Modality, QuestionType, SeedItem, stable_hash
from medgr2_generation.contract import SAMPLE_SCHEMA

TEMPLATE_DIR = Path(__file__).with_name("templates")
_encode_basestring = json.encoder.encode_basestring
_last_encoded: tuple[Any, str] = (None, "")  # (a str, its JSON), replaced as a whole (thread-safe)


def json_str(text: str) -> str:
    """``text`` as ``json.dumps(text, ensure_ascii=False)`` writes it. The last long one is remembered (by
    identity): a prompt goes into its request key, its request body and its template hash in turn."""
    global _last_encoded
    last, encoded = _last_encoded
    if text is last:
        return encoded
    encoded = _encode_basestring(text)
    if len(text) > 256:
        _last_encoded = (text, encoded)
    return encoded


def remember_json(text: str, encoded: str) -> None:
    """Tell :func:`json_str` that ``encoded`` is ``text``'s JSON string (made by a caller that had it cheaper)."""
    global _last_encoded
    if len(text) > 256:
        _last_encoded = (text, encoded)


_encode_str = json_str

REASK = (
    "Your previous reply to the task below was rejected: {error}.\nPrevious reply:\n{reply}\n\n"
    "Answer the task again with one corrected JSON object only.\n\nThe task:\n{prompt}"
)
"""The follow-up prompt for an invalid reply (the validation error is fed back once)."""


class TemplateError(ValueError):
    """A template file is malformed or uses an unknown placeholder."""


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt strategy.

    Attributes:
        strategy: The strategy name recorded in each sample's provenance.
        version: The template version (part of the name users see: ``direct@1``).
        body: The template text with ``$placeholders``.
        source: Where it was read from (a path), for messages.
        bank: An :class:`~medgr2_generation.exemplars.ExemplarBank` whose exemplars fill ``$exemplars``
            (set with :meth:`with_bank`; ``None``: ``$exemplars`` renders as nothing).
        exemplars_per_prompt: Exemplars shown per prompt at most.
        bank_excludes: Datasets whose exemplars are never shown (the restricted ones); ``None``: restricted
            exemplars are shown too (``allow_restricted``).
    """

    strategy: str
    version: str
    body: str
    source: str = ""
    bank: Any = None
    exemplars_per_prompt: int = 3
    bank_excludes: tuple[str, ...] | None = ()

    PLACEHOLDERS = frozenset(
        {"dataset", "modality", "labels", "report", "modalities", "question_types", "schema", "exemplars"}
    )

    def __post_init__(self) -> None:
        unknown = sorted(n for n in self.placeholders if n not in self.PLACEHOLDERS)
        if unknown:
            raise TemplateError(
                f"template {self.source or self.strategy!r} uses unknown placeholder(s) {unknown}; "
                f"allowed: {sorted(self.PLACEHOLDERS)} (write $$ for a literal $)"
            )

    @property
    def placeholders(self) -> set[str]:
        """The placeholders the body uses."""
        return {
            name
            for m in string.Template.pattern.finditer(self.body)
            if not m.group("escaped") and (name := m.group("named") or m.group("braced"))
        }

    def with_bank(
        self, bank: Any, exemplars_per_prompt: int = 3, exclude_datasets: Any = ()
    ) -> PromptTemplate:
        """This template with ``$exemplars`` filled from ``bank`` (raises :class:`TemplateError` when
        the body has no ``$exemplars``)."""
        if "exemplars" not in self.placeholders:
            raise TemplateError(
                f"exemplar_bank is set but the prompt template {self.source or self.name!r} has no $exemplars "
                "placeholder: use strategy meta_cognitive, add $exemplars to your template, or unset exemplar_bank"
            )
        return replace(self, bank=bank, exemplars_per_prompt=exemplars_per_prompt,
                       bank_excludes=None if exclude_datasets is None else tuple(exclude_datasets))

    @property
    def bank_version(self) -> str | None:
        """The exemplar bank version in use (``None``: no bank)."""
        return self.bank.version if self.bank is not None else None

    def generator_version(self, base: str) -> str:
        """``base`` (the medgr2 version), plus ``+bank.<version>`` when an exemplar bank is in use."""
        return f"{base}+bank.{self.bank_version}" if self.bank is not None else base

    def exemplars(self, item: SeedItem) -> str:
        """The ``$exemplars`` text for ``item`` (empty without a bank or exemplars of its modality)."""
        if self.bank is None:
            return ""
        from medgr2_generation.exemplars import parse_question_types, render_exemplars

        chosen = self.bank.for_item(
            item.modality,
            parse_question_types(item.labels.get("question_types")),
            k=self.exemplars_per_prompt,
            exclude_datasets=self.bank_excludes,
        )
        return render_exemplars(chosen, item.modality.label)

    @classmethod
    def from_file(cls, path: str | Path) -> PromptTemplate:
        """Read a template file (header, ``---``, body)."""
        path = Path(path)
        if not path.is_file():
            raise TemplateError(f"prompt template file {str(path)!r} does not exist")
        text = path.read_text(encoding="utf-8")
        head, sep, body = text.partition("\n---\n")
        if not sep:
            raise TemplateError(
                f"{path}: a template needs '# strategy:' and '# version:' lines, then a '---' line"
            )
        meta: dict[str, str] = {}
        for line in head.splitlines():
            key, colon, value = line.lstrip("# ").partition(":")
            if colon:
                meta[key.strip().lower()] = value.strip()
        missing = [k for k in ("strategy", "version") if not meta.get(k)]
        if missing:
            raise TemplateError(f"{path}: the header lacks {missing} (write e.g. '# version: 1')")
        return cls(meta["strategy"], meta["version"], body, str(path))

    @property
    def name(self) -> str:
        """``strategy@version``."""
        return f"{self.strategy}@{self.version}"

    def render(self, item: SeedItem) -> str:
        """The prompt for one seed item (what ``string.Template(body).substitute(...)`` gives, with the
        parts that are the same for every item filled in once per template: see :meth:`_parts`)."""
        values = self._values(item)
        return "".join([part if kind else values[part] for kind, part in self._parts])

    def render_encoded(self, item: SeedItem) -> str:
        """:meth:`render`, with the prompt's JSON string made on the way and remembered for :func:`json_str`
        (which the request key, the request body and the template hash then take): the constant parts are
        encoded once per template (:meth:`_json_parts`), so only the item's values are encoded here. JSON
        escapes character by character, so the encoding of a concatenation is the concatenation of the
        encodings."""
        values = self._values(item)
        prompt = "".join([part if kind else values[part] for kind, part in self._parts])
        encoded = "".join([part if kind else _encode_basestring(values[part])[1:-1] for kind, part in self._json_parts])
        remember_json(prompt, f'"{encoded}"')
        return prompt

    def _values(self, item: SeedItem) -> dict[str, str]:
        """The item's placeholder values."""
        labels = (
            "\n".join([f"- {k}: {v}" for k, v in sorted(item.labels.items()) if k != "restricted"])
            or "- (none)"
        )
        values = {
            "dataset": item.dataset,
            "modality": item.modality.label,
            "labels": labels,
            "report": f"\nReport text:\n{item.text}\n" if item.text else "",
        }
        if self._uses_exemplars:
            values["exemplars"] = self.exemplars(item)
        return values

    @cached_property
    def _json_parts(self) -> tuple[tuple[bool, str], ...]:
        """:meth:`_parts` with each literal part JSON-encoded (without its quotes)."""
        return tuple((kind, _encode_basestring(part)[1:-1] if kind else part) for kind, part in self._parts)

    @cached_property
    def _uses_exemplars(self) -> bool:
        return "exemplars" in self.placeholders

    @cached_property
    def _parts(self) -> tuple[tuple[bool, str], ...]:
        """The body as ``(is_literal, text_or_placeholder)`` parts, the constant placeholders
        (``$modalities``, ``$question_types``, ``$schema``) already filled in; parsed with
        :class:`string.Template`'s own pattern, so ``$$`` and ``${name}`` mean what they mean there
        (an invalid ``$`` raises the same ValueError, at the first render)."""
        constants = {"modalities": ", ".join(m.value for m in Modality),
                     "question_types": ", ".join(q.value for q in QuestionType), "schema": _schema_text()}
        parts: list[tuple[bool, str]] = []
        pos = 0
        for m in string.Template.pattern.finditer(self.body):
            parts.append((True, self.body[pos:m.start()]))
            name = m.group("named") or m.group("braced")
            if m.group("escaped") is not None:
                parts.append((True, string.Template.delimiter))
            elif name is not None:
                parts.append((True, constants[name]) if name in constants else (False, name))
            else:  # the invalid group: string.Template raises the same error
                string.Template(self.body).substitute({n: "" for n in self.PLACEHOLDERS})
            pos = m.end()
        parts.append((True, self.body[pos:]))
        merged: list[tuple[bool, str]] = []
        for kind, text in parts:
            if kind and merged and merged[-1][0]:
                merged[-1] = (True, merged[-1][1] + text)
            elif text or not kind:
                merged.append((kind, text))
        return tuple(merged)

    def hash(self, rendered: str) -> str:
        """The template hash recorded in provenance: over the strategy, version and rendered prompt
        (and the exemplar bank version, when one is in use)."""
        parts = (self.name, rendered, self.bank_version) if self.bank is not None else (self.name, rendered)
        if self.bank is not None and not isinstance(self.bank_version, str):
            return stable_hash(*parts)
        # stable_hash(*parts) exactly (the JSON of a list of strings), without building an encoder per call
        blob = "[" + ", ".join([_encode_str(p) for p in parts]) + "]"
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@lru_cache(maxsize=1)
def _schema_text() -> str:
    """``$schema``: the sample schema as JSON (rendered once per process)."""
    return json.dumps(SAMPLE_SCHEMA, indent=1)


def builtin(strategy: str) -> PromptTemplate:
    """Load a built-in strategy from :data:`TEMPLATE_DIR`."""
    return PromptTemplate.from_file(TEMPLATE_DIR / f"{strategy}.txt")


def resolve_template(strategy: str, template_path: str | Path | None, registry: Any = None) -> PromptTemplate:
    """The template a generator uses: ``template_path`` when given, else the registered strategy.

    A registered target may be a :class:`PromptTemplate`, a ``pathlib.Path`` to a template file,
    or a zero-argument callable returning either.
    """
    if template_path:
        return PromptTemplate.from_file(template_path)
    if registry is None:
        from medgr2.plugins import get_registry

        registry = get_registry()
    target = registry.get("prompt", strategy)
    if callable(target) and not isinstance(target, PromptTemplate):
        target = target()
    if isinstance(target, (str, Path)):
        target = PromptTemplate.from_file(target)
    if not isinstance(target, PromptTemplate):
        raise TemplateError(
            f"prompt {strategy!r} is registered as {type(target).__name__}, not a PromptTemplate"
        )
    return target


def direct() -> PromptTemplate:
    """Built-in ``direct`` strategy: ask for a sample straight away."""
    return builtin("direct")


def step_by_step() -> PromptTemplate:
    """Built-in ``step_by_step`` strategy: describe, pick a fact, write, check."""
    return builtin("step_by_step")


def meta_cognitive() -> PromptTemplate:
    """Built-in ``meta_cognitive`` strategy (the paper's): reflect on supported question types
    and on what a well-formed answer looks like, then write the sample."""
    return builtin("meta_cognitive")
