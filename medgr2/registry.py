"""The typed component registry.

Plugins add entries through the registrar hooks (:mod:`medgr2.hookspecs`); the rest of the
toolkit builds components from config with :meth:`Registry.create`. Targets and options models
may be lazy ``"module:attribute"`` strings, imported only when the component is used, so listing
every plugin imports no heavy library.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from medgr2.kinds import KIND_NAMES, KINDS

INSTANTIATED_KINDS = frozenset(k.name for k in KINDS if k.instantiated)
"""Kinds whose target is a factory called as ``target(options)``; the others are used as they are."""


class RegistryError(Exception):
    """A registration is invalid (e.g. a name registered twice)."""


class UnknownComponentError(KeyError, RegistryError):
    """A component name is not registered; the message suggests close names."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


class OptionsError(ValueError, RegistryError):
    """A component's options failed validation."""

    def __init__(self, kind: str, name: str, error: ValidationError):
        self.kind, self.name, self.error = kind, name, error
        super().__init__(f"{kind} {name!r}: invalid options:\n{error}")


class NoOptions(BaseModel):
    """Options model for components that take none."""

    model_config = ConfigDict(extra="forbid")


def import_target(spec: Any) -> Any:
    """Resolve ``"package.module:attr.sub"`` to the object; any non-string is returned as is."""
    if not isinstance(spec, str):
        return spec
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise RegistryError(f"lazy target {spec!r} must look like 'package.module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def suggest(name: str, choices: Any) -> str:
    """A "did you mean" hint for ``name`` among ``choices`` ("" when nothing is close)."""
    close = difflib.get_close_matches(name, sorted(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


@dataclass
class Entry:
    """One registered component."""

    kind: str
    name: str
    target: Any
    config: Any = None
    plugin: str = ""
    distribution: str | None = None
    version: str | None = None
    description: str = ""

    def load(self) -> Any:
        """Import (once) and return the target."""
        if isinstance(self.target, str):
            self.target = import_target(self.target)
        return self.target

    def options_model(self) -> type[BaseModel]:
        """The options model (imported on first use); :class:`NoOptions` when none was given."""
        if self.config is None:
            return NoOptions
        if isinstance(self.config, str):
            self.config = import_target(self.config)
        return self.config

    def validate_options(self, options: Mapping[str, Any] | BaseModel | None) -> BaseModel:
        """``options`` validated against the options model (raises :class:`OptionsError`)."""
        model = self.options_model()
        if isinstance(options, model):
            return options
        if isinstance(options, BaseModel):
            options = options.model_dump()
        try:
            return model.model_validate(dict(options or {}))
        except ValidationError as e:
            raise OptionsError(self.kind, self.name, e) from e

    def summary(self) -> str:
        """One line for listings: the description, else the first docstring line of an imported target."""
        if self.description:
            return self.description
        target = self.target
        if isinstance(target, str):
            return ""
        doc = inspect.getdoc(target) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


@dataclass
class KindRegistry:
    """The registrar handed to one ``medgr2_register_*`` hook: adds entries of one kind."""

    registry: Registry
    kind: str
    plugin: str = ""
    distribution: str | None = None
    version: str | None = None

    def add(
        self,
        name: str,
        target: Any,
        *,
        config: Any = None,
        description: str = "",
        override: bool = False,
    ) -> None:
        """Register ``name``.

        Args:
            name: The name users write in config (``generator: {name: gemini}``).
            target: The component factory/function, or a lazy ``"module:attr"`` string.
            config: The pydantic options model (or a lazy string); ``None`` when it takes none.
            description: One line for ``medgr2 plugins list`` (else the target's docstring).
            override: Replace an existing entry of the same name instead of failing.
        """
        self.registry.add(
            Entry(self.kind, name, target, config, self.plugin, self.distribution, self.version, description),
            override=override,
        )


@dataclass
class Registry:
    """Every registered component, by kind and name."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KIND_NAMES})
    warnings: list[str] = field(default_factory=list)

    def registrar(self, kind: str, plugin: str = "", distribution: str | None = None,
                  version: str | None = None) -> KindRegistry:
        """The object handed to one plugin's registrar hook for ``kind``."""
        self._check_kind(kind)
        return KindRegistry(self, kind, plugin, distribution, version)

    def add(self, entry: Entry, *, override: bool = False) -> None:
        """Add ``entry``; a taken name is a :class:`RegistryError` unless ``override``."""
        self._check_kind(entry.kind)
        if not entry.name or not entry.name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise RegistryError(f"invalid {entry.kind} name {entry.name!r}: use letters, digits, - _ .")
        existing = self.entries[entry.kind].get(entry.name)
        if existing is not None and not override:
            raise RegistryError(
                f"{entry.kind} {entry.name!r} is registered twice (by plugin {existing.plugin!r} and by "
                f"{entry.plugin!r}). Rename one, or pass override=True to replace it on purpose."
            )
        self.entries[entry.kind][entry.name] = entry

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind``, sorted."""
        self._check_kind(kind)
        return sorted(self.entries[kind])

    def __iter__(self) -> Iterator[Entry]:
        for kind in self.entries:
            yield from (self.entries[kind][n] for n in sorted(self.entries[kind]))

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self.entries.get(kind, {})

    def entry(self, kind: str, name: str) -> Entry:
        """The entry ``kind/name``; unknown names raise with a "did you mean" hint."""
        self._check_kind(kind)
        try:
            return self.entries[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise UnknownComponentError(
                f"unknown {kind} {name!r}.{suggest(name, self.entries[kind])} Known: {known}."
            ) from None

    def get(self, kind: str, name: str) -> Any:
        """The loaded target of ``kind/name`` (a class, factory or function)."""
        return self.entry(kind, name).load()

    def create(self, kind: str, name: str, options: Mapping[str, Any] | BaseModel | None = None) -> Any:
        """Build a component from validated options.

        Instantiated kinds (see :data:`INSTANTIATED_KINDS`) return ``target(options)``; function
        kinds return the function with every option bound as a keyword argument, so the options
        model's defaults are the defaults (the function's own defaults apply only to arguments the
        model does not have).
        """
        entry = self.entry(kind, name)
        opts = entry.validate_options(options)
        target = entry.load()
        if kind in INSTANTIATED_KINDS:
            return target(opts)
        bound = dict(opts)
        if bound:
            fn = functools.partial(target, **bound)
            functools.update_wrapper(fn, target)
            return fn
        return target

    def _check_kind(self, kind: str) -> None:
        if kind not in self.entries:
            raise RegistryError(f"unknown component kind {kind!r}.{suggest(kind, self.entries)}")
