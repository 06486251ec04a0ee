"""The hooks a medgr2 plugin can implement.

Every hook is a *registrar*: it receives a registry bound to one component kind and adds
entries to it. Each is called **once per process**, when the registry is built, never per
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

if TYPE_CHECKING:
    from medgr2.registry import KindRegistry

PROJECT = "medgr2"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def medgr2_register_datasets(registry: KindRegistry) -> None:
    """Register dataset sources (kind ``dataset``).

    A target builds an object satisfying :class:`medgr2.interfaces.DatasetSource` from its
    validated options: ``registry.add("csv", "pkg.mod:CsvSource", config=CsvOptions)``.

    :param registry: the dataset registry; call ``registry.add(name, target, config=...)``.
    """


@hookspec
def medgr2_register_generators(registry: KindRegistry) -> None:
    """Register VQA generators (kind ``generator``).

    A target builds an object satisfying :class:`medgr2.interfaces.Generator` from its
    validated options (backend, model, concurrency, prompt strategy ...).

    :param registry: the generator registry; call ``registry.add(name, target, config=...)``.
    """


@hookspec
def medgr2_register_reward_models(registry: KindRegistry) -> None:
    """Register reward models R_φ (kind ``reward_model``).

    A target builds an object satisfying :class:`medgr2.interfaces.RewardModel`, scoring on the
    paper's [−6, 10] scale.

    :param registry: the reward-model registry; call ``registry.add(name, target, config=...)``.
    """


@hookspec
def medgr2_register_filters(registry: KindRegistry) -> None:
    """Register sample filters (kind ``filter``): threshold, top-K, dedup, overlap ...

    A target builds an object satisfying :class:`medgr2.interfaces.Filter`.

    :param registry: the filter registry; call ``registry.add(name, target, config=...)``.
    """


@hookspec
def medgr2_register_trainers(registry: KindRegistry) -> None:
    """Register policy trainers (kind ``trainer``): SFT, GRPO ...

    A target builds an object satisfying :class:`medgr2.interfaces.PolicyTrainer`. Import
    torch/TRL inside its methods or behind a lazy target, never at module level of the plugin.

    :param registry: the trainer registry; call ``registry.add(name, target, config=...)``.
    """


@hookspec
def medgr2_register_evaluators(registry: KindRegistry) -> None:
    """Register evaluators (kind ``evaluator``).

    A target builds an object satisfying :class:`medgr2.interfaces.Evaluator`.

    :param registry: the evaluator registry; call ``registry.add(name, target, config=...)``.
    """


@hookspec
def medgr2_register_reward_terms(registry: KindRegistry) -> None:
    """Register GRPO reward terms (kind ``reward_term``).

    A target is a plain function ``f(completions, **kwargs) -> list[float]`` (like TRL's
    ``trl/rewards``), documented with a doctest. Options, when registered, are bound to the
    function as keyword arguments.

    :param registry: the reward-term registry; call ``registry.add(name, target, config=...)``.
    """


@hookspec
def medgr2_register_scorers(registry: KindRegistry) -> None:
    """Register evaluation scoring protocols (kind ``scorer``).

    A target is a documented function that decides whether a model answer matches the
    ground truth under one published rule (its docstring names the source of the rule).

    :param registry: the scorer registry; call ``registry.add(name, target)``.
    """


@hookspec
def medgr2_register_image_loaders(registry: KindRegistry) -> None:
    """Register image loaders (kind ``image_loader``), keyed by ``ImageRef.loader``.

    A target is ``f(ref: ImageRef) -> PIL.Image.Image``. It must refuse paths that escape the
    reference's root (use :func:`medgr2.images.resolve_inside`).

    :param registry: the image-loader registry; call ``registry.add(name, target)``.
    """


@hookspec
def medgr2_register_prompts(registry: KindRegistry) -> None:
    """Register prompt strategies for generators (kind ``prompt``).

    A target is a prompt template object or a path to a versioned template file; built-ins
    are ``direct``, ``step_by_step`` and ``meta_cognitive``. Registering an existing name with
    ``override=True`` replaces a built-in template.

    :param registry: the prompt registry; call ``registry.add(name, target)``.
    """


@hookspec
def medgr2_register_functions(registry: KindRegistry) -> None:
    """Register named helper functions that stages look up (kind ``function``).

    The core's stages stay plugin-agnostic by calling helpers through the registry instead of
    importing a plugin. Built-in names: ``reward.grade_set`` (build the graded R_φ set:
    ``f(grade_sources, registry, *, samples, references, options, seed, reporter) -> (train, held_out)``),
    ``reward.label_policy_samples`` (label policy answers for continual R_φ training),
    ``reward.calibration`` (write a reward model's calibration report) and
    ``policy.tiny`` (build an offline tiny VLM: ``f(arch, out_dir, *, seed) -> Path``). Register the
    same name with ``override=True`` to replace one.

    :param registry: the function registry; call ``registry.add(name, target)``.
    """


@hookspec
def medgr2_register_commands(cli: Any) -> None:
    """Add sub-commands to the ``medgr2`` command line.

    :param cli: the root ``typer.Typer`` application. Keep imports inside the command bodies
        so that ``medgr2 --help`` stays fast.
    """


REGISTRAR_HOOKS: dict[str, str] = {
    "dataset": "medgr2_register_datasets",
    "generator": "medgr2_register_generators",
    "reward_model": "medgr2_register_reward_models",
    "filter": "medgr2_register_filters",
    "trainer": "medgr2_register_trainers",
    "evaluator": "medgr2_register_evaluators",
    "reward_term": "medgr2_register_reward_terms",
    "scorer": "medgr2_register_scorers",
    "image_loader": "medgr2_register_image_loaders",
    "prompt": "medgr2_register_prompts",
    "function": "medgr2_register_functions",
}
"""Component kind → the hook that registers it."""
