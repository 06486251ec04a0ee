"""The hooks a medgr2 plugin can implement.

Every ``medgr2_register_<kind>s`` hook is a *registrar*: it receives a registry bound to one
component kind and adds entries to it. The registrar hooks are generated from the kinds table
(:data:`medgr2.kinds.KINDS`), where each kind's contract is written once. Each is called **once per process**, when the registry is built, never per
sample. Registrar hooks run in plugin load order (entry points alphabetically, then
``MEDGR2_PLUGINS``, then ``--plugin``; ``@hookimpl(trylast=True)`` runs last); a name registered
twice is an error unless the later registration passes ``override=True``.

A plugin module implements hooks with :data:`hookimpl`::

    from medgr2 import hookimpl

    @hookimpl
    def medgr2_register_generators(registry):
        registry.add("mine", "my_pkg.gen:MyGenerator", config="my_pkg.gen:MyOptions")

Targets may be objects or lazy ``"module:attribute"`` strings, so listing plugins imports no
heavy library. Register the module under the ``medgr2`` entry-point group of your package::

    [project.entry-points.medgr2]
    mine = "my_pkg.plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from medgr2.kinds import KINDS, Kind

if TYPE_CHECKING:
    from medgr2.registry import KindRegistry

PROJECT = "medgr2"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


def registrar_doc(kind: Kind) -> str:
    """The documentation of ``kind``'s registrar hook (also what docs/plugin-hooks.md shows)."""
    return (f"Register components of kind ``{kind.name}`` ({kind.summary}).\n\n{kind.doc}\n\n"
            f":param registry: the {kind.name} registry; call ``registry.add(name, target, config=...)``.")


def _registrar_spec(kind: Kind) -> Any:
    def spec(registry: KindRegistry) -> None:
        """(generated)"""

    spec.__name__ = spec.__qualname__ = kind.hook
    spec.__module__ = __name__
    spec.__doc__ = registrar_doc(kind)
    return hookspec(spec)


for _kind in KINDS:
    globals()[_kind.hook] = _registrar_spec(_kind)
del _kind


@hookspec
def medgr2_register_commands(cli: Any) -> None:
    """Add sub-commands to the ``medgr2`` command line.

    :param cli: the root ``typer.Typer`` application. Keep imports inside the command bodies
        so that ``medgr2 --help`` stays fast.
    """


REGISTRAR_HOOKS: dict[str, str] = {k.name: k.hook for k in KINDS}
"""Component kind → the hook that registers it."""
