"""Plugin loading: entry points, ad hoc modules and files, and the registry they fill.

Loading order (each step after the previous one):

1. blocked names (``--no-plugin NAME``; ``MEDGR2_DISABLE_PLUGIN_AUTOLOAD=1`` blocks every
   entry point);
2. entry points of the ``medgr2`` group, each wrapped: one that fails to import (an exception,
   or ``sys.exit()`` at import) prints a warning and is skipped (``MEDGR2_STRICT_PLUGINS=1``,
   ``--strict-plugins`` or ``strict=True`` makes it an error);
3. ``MEDGR2_PLUGINS`` (comma-separated specs);
4. ``--plugin`` specs: an entry-point name, a dotted module, or a path to a ``.py`` file;
5. :func:`check_pending`: a plugin implementing a hook that does not exist (a typo such as
   ``medgr2_register_generator``) is unregistered with a warning (an error in strict mode).

Then every registrar hook is called once, plugin by plugin, so each entry knows its plugin
(:func:`build_registry`). A plugin that registers a name another plugin already took is skipped
whole, with a warning (an error in strict mode); built-ins load first, so they keep their names. :func:`extend_registry` loads more specs into an existing registry (the
config loader uses it for a run config's own ``plugins``). Library code gets a fresh registry
from :func:`load_registry`; the CLI shares one process-wide registry (:func:`get_registry`).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata as md
import importlib.util
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from medgr2 import hookspecs
from medgr2.registry import Registry, RegistryError

ENTRY_POINT_GROUP = "medgr2"


class PluginLoadError(RuntimeError):
    """A plugin could not be loaded (raised only in strict mode)."""


class PluginWarning(UserWarning):
    """A plugin failed to load and was skipped."""


@dataclass
class PluginInfo:
    """A loaded plugin, for ``medgr2 plugins list``."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    source: str = "entry-point"


@dataclass
class PluginSet:
    """A plugin manager plus what was loaded into it and what failed."""

    pm: pluggy.PluginManager
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    strict: bool = False

    def fail(self, what: str, problem: str, exc: BaseException | None = None) -> None:
        """Record that plugin ``what`` was skipped because of ``problem``.

        Strict mode raises :class:`PluginLoadError`; otherwise the problem is kept in
        :attr:`failures` (one line) and issued once as a :class:`PluginWarning`.
        """
        line = " ".join(f"plugin {what} {problem}".split())
        if self.strict:
            raise PluginLoadError(f"{line} (strict plugin mode; pass --no-plugin NAME to skip it)") from exc
        if line in self.failures:
            return
        self.failures.append(line)
        warnings.warn(f"medgr2: {line} (skipped)", PluginWarning, stacklevel=4)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _split_env(name: str) -> list[str]:
    return [s.strip() for s in os.environ.get(name, "").split(",") if s.strip()]


def new_plugin_manager() -> pluggy.PluginManager:
    """A fresh pluggy manager that knows the medgr2 hookspecs (nothing registered)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _import_file(path: Path) -> ModuleType:
    """Import a single-file plugin as module ``medgr2_adhoc_<stem>``."""
    path = path.resolve()
    name = "medgr2_adhoc_" + path.stem.replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so lazy targets "medgr2_adhoc_<stem>:Obj" resolve
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _describe(exc: BaseException) -> str:
    """One line: the exception type and its first message line."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) at import"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_plugins(
    plugins: Sequence[str] = (),
    *,
    disabled: Sequence[str] = (),
    autoload: bool | None = None,
    strict: bool | None = None,
    env: bool = True,
) -> PluginSet:
    """Build a fresh plugin manager and load plugins into it (see the module docstring).

    Args:
        plugins: ``--plugin`` specs: entry-point names, dotted modules or ``.py`` paths.
        disabled: Plugin names not to load (``--no-plugin``).
        autoload: Load the ``medgr2`` entry points (default: unless
            ``MEDGR2_DISABLE_PLUGIN_AUTOLOAD=1``).
        strict: A plugin that fails is an error (default: ``MEDGR2_STRICT_PLUGINS=1``).
        env: Read extra specs from ``MEDGR2_PLUGINS``.
    """
    strict = _env_flag("MEDGR2_STRICT_PLUGINS") if strict is None else strict
    autoload = (not _env_flag("MEDGR2_DISABLE_PLUGIN_AUTOLOAD")) if autoload is None else autoload
    ps = PluginSet(new_plugin_manager(), strict=strict)
    for name in disabled:
        ps.pm.set_blocked(name)

    eps = {ep.name: ep for ep in md.entry_points(group=ENTRY_POINT_GROUP)}
    if autoload:
        for ep in sorted(eps.values(), key=lambda e: e.name):
            if ps.pm.is_blocked(ep.name) or ps.pm.has_plugin(ep.name):
                continue
            try:
                _register(ps, ep.load(), ep.name, "entry-point", ep)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - any import error degrades to a warning
                ps.fail(repr(ep.name), f"failed to load: {_describe(exc)}", exc)

    for spec in [*(_split_env("MEDGR2_PLUGINS") if env else []), *plugins]:
        try:
            _load_spec(ps, spec, eps)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - sys.exit() at import included
            ps.fail(repr(spec), f"failed to load: {_describe(exc)}", exc)

    check_pending(ps)
    return ps


def check_pending(ps: PluginSet) -> None:
    """Unregister (with a warning) every plugin implementing a hook that does not exist."""
    while True:
        try:
            ps.pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = ps.pm.get_name(exc.plugin) or repr(exc.plugin)
            unknown = [
                hc.name for hc in ps.pm.get_hookcallers(exc.plugin) or [] if not hc.has_spec()
            ]
            close = difflib.get_close_matches(unknown[0], hook_names(), n=1) if unknown else []
            hint = f" Did you mean {close[0]!r}?" if close else ""
            ps.pm.unregister(exc.plugin)
            ps.infos.pop(name, None)
            ps.fail(repr(name), f"implements unknown hook(s) {', '.join(unknown)}.{hint}", exc)


def _register(ps: PluginSet, module: Any, name: str, source: str, ep: md.EntryPoint | None = None) -> None:
    """Register ``module`` as plugin ``name`` and record where it came from."""
    if ps.pm.is_blocked(name) or ps.pm.has_plugin(name) or ps.pm.is_registered(module):
        return
    ps.pm.register(module, name=name)
    module_name = getattr(module, "__name__", name)
    dist = ep.dist if ep is not None else None
    if dist is not None:
        ps.infos[name] = PluginInfo(name, module_name, dist.name, dist.version, source)
    else:
        ps.infos[name] = PluginInfo(name, module_name, *_distribution_of(module_name, source), source)


def _distribution_of(module_name: str, source: str) -> tuple[str | None, str | None]:
    """(distribution, version) that installed a plugin module (none for a file plugin)."""
    if source != "module":
        return None, None
    names = _packages_distributions().get(module_name.partition(".")[0]) or []
    if not names:
        return None, None
    try:
        return names[0], md.version(names[0])
    except md.PackageNotFoundError:
        return names[0], None


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> Mapping[str, list[str]]:
    return md.packages_distributions()


def hook_names() -> list[str]:
    """The names of every hook a plugin may implement."""
    return sorted(n for n in dir(hookspecs) if n.startswith(f"{hookspecs.PROJECT}_"))


def _is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def _load_spec(ps: PluginSet, spec: str, eps: dict[str, md.EntryPoint]) -> None:
    """Load one ``--plugin`` spec: a ``.py`` path, an entry-point name or a dotted module."""
    is_file = _is_file_spec(spec)
    if ps.pm.is_blocked(Path(spec).stem if is_file else spec):
        return
    if is_file:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"no plugin file {spec!r}")
        _register(ps, _import_file(path), path.stem, f"file {path}")
    elif spec in eps:
        _register(ps, eps[spec].load(), spec, "entry-point", eps[spec])
    else:
        _register(ps, importlib.import_module(spec), spec, "module")


def build_registry(ps: PluginSet, registry: Registry | None = None) -> Registry:
    """Call every registrar hook once, plugin by plugin, into ``registry`` (default: a new one)."""
    registry = Registry() if registry is None else registry
    skipped: set[str] = set()
    replaced: dict[str, list[Any]] = {}  # plugin -> the entries it overrode (restored if it is skipped)
    for kind, hook_name in hookspecs.REGISTRAR_HOOKS.items():
        for impl, call in plugin_hook_calls(ps.pm, hook_name):
            name = impl.plugin_name
            if name in skipped:
                continue
            info = ps.infos.get(name) or PluginInfo(name, name)
            registrar = registry.registrar(kind, name, info.distribution, info.version)
            before = dict(registry.entries[kind])
            try:
                call(registry=registrar)
            except RegistryError as exc:
                if ps.strict:
                    raise
                _note_overrides(replaced, name, before, registry.entries[kind])
                _skip_plugin(ps, registry, name, replaced.get(name, []))
                skipped.add(name)
                ps.fail(repr(name), f"failed in {hook_name}: {exc}", exc)
                continue
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                ps.fail(repr(name), f"failed in {hook_name}: {_describe(exc)}", exc)
            _note_overrides(replaced, name, before, registry.entries[kind])
    registry.warnings.extend(f for f in ps.failures if f not in registry.warnings)
    return registry


def _note_overrides(replaced: dict[str, list[Any]], plugin: str, before: Mapping[str, Any],
                    after: Mapping[str, Any]) -> None:
    for entry_name, old in before.items():
        new = after.get(entry_name)
        if new is not old and new is not None and new.plugin == plugin:
            replaced.setdefault(plugin, []).append(old)


def _skip_plugin(ps: PluginSet, registry: Registry, name: str, overridden: Sequence[Any] = ()) -> None:
    """Take plugin ``name`` out: its registry entries (the entries it overrode come back), its hooks
    (commands too) and its info."""
    for kind in registry.entries:
        for entry_name in [n for n, e in registry.entries[kind].items() if e.plugin == name]:
            del registry.entries[kind][entry_name]
    for old in overridden:
        registry.entries[old.kind].setdefault(old.name, old)
    plugin = ps.pm.get_plugin(name)
    if plugin is not None:
        ps.pm.unregister(plugin)
    ps.infos.pop(name, None)


def _is_wrapper(impl: Any) -> bool:
    return bool(getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False))


def plugin_hook_calls(pm: pluggy.PluginManager, hook_name: str) -> list[tuple[Any, Any]]:
    """``(hookimpl, caller)`` for each plugin implementing ``hook_name``, in load order.

    Each caller goes through pluggy (``pm.subset_hook_caller``) with every *other* plugin's plain
    implementation removed, so one call runs one plugin's hook (its entries are attributed to it and
    its failure is its own) while hook wrappers and ``pm.trace`` / hook-call monitoring still apply.
    """
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    plain = [i for i in impls if not _is_wrapper(i)]
    return [(impl, pm.subset_hook_caller(hook_name, remove_plugins=[i.plugin for i in plain if i is not impl]))
            for impl in _in_load_order(plain)]


def _in_load_order(impls: Sequence[Any]) -> list[Any]:
    """Hook implementations in the order their plugins loaded (so a later ``--plugin`` can override a
    built-in), except that ``tryfirst`` ones come first and ``trylast`` ones last."""
    normal = [i for i in impls if not i.tryfirst and not i.trylast]
    return [i for i in impls if i.tryfirst] + normal + [i for i in impls if i.trylast]


def extend_registry(registry: Registry, specs: Sequence[str], *, strict: bool | None = None) -> list[str]:
    """Load more plugin specs (as for ``--plugin``) into an existing registry.

    Plugins the registry already has entries from are skipped, so calling this twice is harmless;
    a name that collides with an existing entry raises :class:`~medgr2.registry.RegistryError`.
    Returns the failures (one line each) instead of warning: the caller reports them (the config
    loader turns them into config problems).
    """
    have = {e.plugin for e in registry}
    todo = [s for s in specs if (Path(s).stem if _is_file_spec(s) else s) not in have]
    if not todo:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        ps = load_plugins(todo, autoload=False, strict=strict, env=False)
        build_registry(ps, registry)
    return ps.failures


def load_registry(plugins: Sequence[str] = (), **kwargs: Any) -> Registry:
    """Load plugins and return their registry (a fresh one on every call)."""
    return build_registry(load_plugins(plugins, **kwargs))


_default: tuple[PluginSet, Registry] | None = None
_default_args: dict[str, Any] = {}


def configure(plugins: Sequence[str] = (), disabled: Sequence[str] = (), strict: bool | None = None) -> None:
    """Set the plugin specs the process-wide registry is built with (the CLI calls this once)."""
    global _default, _default_args
    _default = None
    _default_args = {"plugins": list(plugins), "disabled": list(disabled), "strict": strict}


def cli_plugin_args() -> list[str]:
    """The ``--plugin`` / ``--no-plugin`` / ``--strict-plugins`` flags that rebuild this process's plugin
    set in a child ``medgr2`` process (entry points and ``MEDGR2_PLUGINS`` it finds by itself)."""
    args: list[str] = []
    for spec in _default_args.get("plugins", []):
        args += ["--plugin", spec]
    for name in _default_args.get("disabled", []):
        args += ["--no-plugin", name]
    return [*args, "--strict-plugins"] if _default_args.get("strict") else args


def default_plugins() -> PluginSet:
    """The process-wide plugin set, loaded on first use."""
    global _default
    if _default is None:
        ps = load_plugins(**_default_args)
        _default = (ps, build_registry(ps))
    return _default[0]


def get_registry() -> Registry:
    """The process-wide registry, built on first use (library users may pass their own)."""
    default_plugins()
    assert _default is not None
    return _default[1]


def ensure_registry(registry: Registry | None) -> Registry:
    """``registry`` when one is given, else the process-wide one (:func:`get_registry`)."""
    return registry if registry is not None else get_registry()
