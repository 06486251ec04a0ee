"""Library functions for each stage, over the component Protocols only.

The CLI commands and the loop call the same functions: ``data``, ``generate``, ``reward``,
``train``, ``evaluate``. Each takes built components or the config plus a registry, and a
:class:`~medgr2.interfaces.StageContext` whose ``work_dir`` receives the stage's artifacts.
"""
