"""medgr2: generative reward learning for medical vision-language reasoning (MedGR2).

The core package: data objects, the component Protocols, pluggy hookspecs, the registry, config,
the run store, the loop and the CLI. It never imports a plugin or a heavy library at import time.
"""

from __future__ import annotations

from typing import Any

from medgr2.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl", "load_reward_model", "run"]


def run(config: Any = None, **kwargs: Any) -> Any:
    """Run the MedGR2 loop (Algorithm 1) as a library call; see :func:`medgr2.loop.run`."""
    from medgr2.loop import run as _run

    return _run(config, **kwargs)


def load_reward_model(path: Any, registry: Any = None, **kwargs: Any) -> Any:
    """Load a saved reward model R_φ (a version folder, a reward work folder or a run folder).

    See :func:`medgr2.hub.load_reward_model`; ``docs/reward-model.md`` shows it in use.
    """
    from medgr2.hub import load_reward_model as _load

    return _load(path, registry, **kwargs)
