"""The medgr2 hooks of this package (loaded through the ``medgr2`` entry point).

Keep this module light: register lazy ``"module:attribute"`` strings, so that listing plugins
imports nothing else.
"""

from medgr2 import hookimpl


@hookimpl
def medgr2_register_generators(registry):
    """Register the ``yesno`` generator."""
    registry.add(
        "yesno",
        "medgr2_yesno.generator:YesNoGenerator",
        config="medgr2_yesno.generator:YesNoOptions",
        description="Yes/no questions from one label of each seed item",
    )
