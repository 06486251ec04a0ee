"""The run configuration: one pydantic tree, loaded from YAML or TOML plus ``--set`` overrides.

Precedence: defaults < file < ``--set a.b.c=value``. Validation has two phases, and every error
of both is reported together in one :class:`ConfigError`:

1. structure: unknown keys, wrong types (pydantic);
2. components: each ``{name, options}`` is looked up in the registry (unknown names get a
   "did you mean") and its ``options`` are validated against the options model the plugin
   registered. Phase 2 walks the raw data, so it runs even when phase 1 found errors.

Secrets (API keys) are never read from config: components read them from the environment
with :func:`env_secret` and they are never written anywhere.
"""

from __future__ import annotations

import copy
import json
import os
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from medgr2.registry import OptionsError, Registry, UnknownComponentError


class ConfigError(ValueError):
    """Every problem found in a config, reported at once (the CLI exits 2 on it)."""

    def __init__(self, problems: Sequence[str], source: str = ""):
        self.problems = list(problems)
        head = f"{len(self.problems)} problem(s) in the configuration" + (f" {source}" if source else "")
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class ComponentSpec(Section):
    """A component chosen by name, with its options (validated by the component's own model)."""

    kind: ClassVar[str] = ""
    name: str = Field(description="The registered name of the component.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options for this component.")


class ComponentRef(BaseModel):
    """A component named *inside another component's options* (e.g. a GRPO reward term).

    A plugin's options model declares a field of a subclass (or a list of one) that sets ``kind``
    and, when its name field is not ``name``, ``name_field``; config validation then checks the
    name against the registry and the nested ``options`` against that component's own model, so a
    typo deep inside ``policy.grpo.options.reward`` is caught before any stage runs.
    """

    model_config = ConfigDict(extra="forbid")

    kind: ClassVar[str] = ""
    name_field: ClassVar[str] = "name"


class GradeSetSpec(ComponentSpec):
    kind: ClassVar[str] = "grade_set"


class DatasetSpec(ComponentSpec):
    kind: ClassVar[str] = "dataset"


class GeneratorSpec(ComponentSpec):
    kind: ClassVar[str] = "generator"


class GeneratorUpdaterSpec(ComponentSpec):
    kind: ClassVar[str] = "generator_updater"


class RewardModelSpec(ComponentSpec):
    kind: ClassVar[str] = "reward_model"


class FilterSpec(ComponentSpec):
    kind: ClassVar[str] = "filter"


class TrainerSpec(ComponentSpec):
    kind: ClassVar[str] = "trainer"


class EvaluatorSpec(ComponentSpec):
    kind: ClassVar[str] = "evaluator"


class DataSection(Section):
    """Seed data."""

    sources: list[DatasetSpec] = Field(
        default_factory=lambda: [DatasetSpec(name="demo")],
        description="Dataset sources whose train split seeds generation and whose test split is evaluated.",
    )
    seed_set: bool = Field(default=False, description="Start D_gen from the sources' ready-made VQA samples.")
    max_items: int | None = Field(default=None, ge=1, description="Cap on seed items per cycle (None: all).")


CLOSING_SHARE = 0.5
"""The ``labels`` builder's default share of rationales ending in a confident closing sentence, for the
generator and the question builder alike (R_φ's references are then written in the generator's style, and
a wrong answer's closing sentence does not give it away; ``medgr2_datasets.defects``)."""


class GenerationSection(Section):
    """Step 1: the generator G."""

    generator: GeneratorSpec = Field(default_factory=lambda: GeneratorSpec(name="labels", options={"defects": {
        "wrong_confusable": 0.2, "contradicting_rationale": 0.05, "unanswerable": 0.05, "bad_rationale": 0.05,
        "bad_options": 0.05}, "closing_share": CLOSING_SHARE}),
                                     description="The generator backend and its options.")
    limit: int | None = Field(default=None, ge=1, description="Stop after this many seed items.")
    update: GeneratorUpdaterSpec | None = Field(
        default=None, description="Evolve the generator each cycle from its top-reward kept samples (Algorithm 1, "
                                  "l. 14), e.g. {name: exemplar-bank} for the API generators; None: G stays fixed.")


class RewardSection(Section):
    """Step 2a and 4: the reward model R_φ and its graded training data."""

    model: RewardModelSpec = Field(default_factory=lambda: RewardModelSpec(
        name="minilm", options={"epochs": 6, "max_train_examples": 1200, "freeze_layers": 4, "lr": 1e-4,
                                "head_lr": 3e-3, "threads": 1}),
                                   description="The reward model and its options.")
    grade_sources: list[DatasetSpec] = Field(
        default_factory=list,
        description="Sources of reference texts (reports) for the 4-grade set; empty: the seed samples' answers.",
    )
    retrain_each_cycle: bool = Field(default=True, description="Refresh R_φ on policy samples after each cycle.")
    replay_fraction: float = Field(default=0.5, ge=0, le=1, description="Share of earlier RM data replayed.")
    min_retrain_examples: int = Field(
        default=64, ge=1, description="A retrain sees at least this many examples (replay makes up the rest); with "
                                      "fewer available, R_φ is kept and the reason recorded.")
    warn_below_spearman: float = Field(
        default=0.6, ge=-1, le=1, description="reward-init warns when R_φ v0's held-out Spearman is below this, or "
                                              "its grade means are out of order: filtering on its scores may then "
                                              "keep the wrong samples.")
    promotion_tolerance: float = Field(
        default=0.05, ge=0, le=1, description="A retrained R_φ replaces the current one only if its held-out "
                                              "pairwise accuracy falls by at most this much.")
    grade_set: GradeSetSpec = Field(
        default_factory=lambda: GradeSetSpec(name="four-grade"),
        description="Builds R_φ v0's graded set; the built-in four-grade takes options {references: [...], grading: "
                    "{...}} (`reward.references` and `reward.grading` are short for those two options).")
    labelling: str = Field(default="match", description="How policy samples are labelled for RM retraining: a "
                                                        "registered policy_labeller (match, judge, grade).")
    calibrator: str = Field(default="grades", description="The calibrator (kind calibrator) of R_φ's held-out report.")
    judge: GeneratorSpec | None = Field(
        default=None, description="An LLM judge (a generator backend with complete_json: gemini, openai, local) "
                                  "that scores samples on the paper's four criteria: seeds R_φ v0 "
                                  "(judge_seed_samples) and labels policy samples when labelling='judge'.")
    judge_seed_samples: int = Field(
        default=0, ge=0, description="reward-init: judge this many of the run's train-split samples and train R_φ v0 "
                                     "on those scores together with the graded set (needs reward.judge).")

    @model_validator(mode="after")
    def _judge_is_set_when_used(self) -> RewardSection:
        if self.judge is None and (self.judge_seed_samples or self.labelling == "judge"):
            used = "judge_seed_samples > 0" if self.judge_seed_samples else "labelling: judge"
            raise ValueError(f"{used} needs reward.judge (e.g. {{name: gemini, options: {{model: ...}}}})")
        return self


class FilterSection(Section):
    """Step 2b: which scored samples are kept."""

    steps: list[FilterSpec] = Field(
        default_factory=lambda: [FilterSpec(name="top_k", options={"fraction": 0.5,
                                                                   "stratify_by": ["dataset", "question_type"]}),
                                 FilterSpec(name="dedup"), FilterSpec(name="overlap")],
        description="Filters applied in order; a sample is kept only if every step keeps it.",
    )
    allow_overlap: bool = Field(default=False, description="Keep samples already in D_gen (Algorithm 1, l. 6-8).")


class LauncherSection(Section):
    """How a training stage is launched on several processes: ``accelerate launch`` with these settings."""

    config_file: str | None = Field(default=None, description="An accelerate config (examples/accelerate/*.yaml); "
                                                                "None: accelerate's defaults.")
    num_processes: int = Field(default=2, ge=1, description="Processes (GPUs, or CPU processes with a MULTI_GPU "
                                                              "config such as examples/accelerate/cpu_2proc.yaml).")
    main_process_port: int | None = Field(default=None, ge=1024, le=65535,
                                          description="Rendezvous port (None: accelerate's default, 29500).")
    timeout_s: float | None = Field(default=None, gt=0, description="Stop a launched stage after this many seconds.")


class PolicySection(Section):
    """Step 3: the policy and how it is trained."""

    model: str | None = Field(default=None, description="A local folder with config.json, or a Hub id present in "
                                                        "the local Hugging Face cache (never downloaded); None "
                                                        "builds a tiny VLM.")
    tiny_arch: str = Field(default="qwen2_5_vl",
                           description="The tiny starting policy (kind tiny_policy: qwen2_5_vl, llava) when model is None.")
    answer_format: Literal["letter", "text", "think"] = Field(
        default="text", description="How the policy answers: option letter, option text, or <think>/<answer>.")
    sft: TrainerSpec | None = Field(default_factory=lambda: TrainerSpec(name="sft", options={
        "max_steps": 500, "per_device_train_batch_size": 16, "num_threads": 1}),
                                    description="SFT trainer.")
    launcher: LauncherSection | None = Field(
        default=None, description="Launch SFT and GRPO through `accelerate launch` (several processes); None: in the "
                                  "loop's own process.")
    grpo: TrainerSpec | None = Field(
        default_factory=lambda: TrainerSpec(name="grpo", options={
            "max_steps": 20, "num_generations": 8, "per_device_train_batch_size": 16, "max_completion_length": 16,
            "num_threads": 1}),
        description="GRPO trainer.")


class EvaluationSection(Section):
    """Evaluation of the policy after each cycle."""

    evaluator: EvaluatorSpec | None = Field(default_factory=lambda: EvaluatorSpec(name="vqa",
                                                                               options={"mode": "likelihood"}),
                                            description="The evaluator; None skips evaluation.")
    also: list[EvaluatorSpec] | None = Field(
        default=None,
        description="More evaluators run beside `evaluator` at every evaluation (e.g. generated answers beside "
                    "likelihood): their reports sit in `<stage>/also-<i>/` and the run report shows them side by side. "
                    "Unset: the vqa evaluator in its other mode (likelihood ↔ generate) beside vqa, nothing beside "
                    "any other evaluator.")
    scorer: str = Field(default="medgr2", description="The scoring protocol (see `medgr2 eval scorers`).")
    question_builder: GeneratorSpec = Field(
        default_factory=lambda: GeneratorSpec(name="labels", options={"closing_share": CLOSING_SHARE}),
        description="Builds ground-truth questions from held-out labelled items (and RM reference samples).")
    sources: list[DatasetSpec] = Field(default_factory=list,
                                       description="Evaluation sets; empty: the test split of data.sources.")
    max_samples: int | None = Field(default=None, ge=1, description="Cap on evaluated samples.")

    @model_validator(mode="after")
    def _also_goes_with_the_default_evaluator(self) -> EvaluationSection:
        """Unset ``also`` means "the vqa evaluator's other mode" (both protocols side by side), and nothing
        beside any other evaluator."""
        if self.also is not None:
            return self
        if self.evaluator is None or self.evaluator.name != "vqa":
            self.also = []
        else:
            mode = self.evaluator.options.get("mode", "generate")
            other = "generate" if mode == "likelihood" else "likelihood"
            self.also = [EvaluatorSpec(name="vqa", options={**self.evaluator.options, "mode": other})]
        return self


class RunConfig(Section):
    """The whole run: one tree, every field documented."""

    name: str = Field(default="quickstart", description="Run name: the run directory is runs_dir/name.")
    runs_dir: Path = Field(default=Path("runs"), description="Where run directories live.")
    seed: int = Field(default=0, description="Seed of every random choice in the run.")
    cycles: int = Field(default=1, ge=1, description="Number of MedGR2 cycles T.")
    plugins: list[str] = Field(default_factory=list, description="Extra plugin specs to load (like --plugin).")
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list, description="Trackers every stage logs its counts and timings to, and the trainers "
                                          "their curves (tensorboard: runs/<name>/tensorboard/; needs the "
                                          "tensorboard or wandb extra).")
    data: DataSection = Field(default_factory=DataSection)
    generation: GenerationSection = Field(default_factory=GenerationSection)
    reward: RewardSection = Field(default_factory=RewardSection)
    filters: FilterSection = Field(default_factory=FilterSection)
    policy: PolicySection = Field(default_factory=PolicySection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


# ---------------------------------------------------------------- loading and overrides


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file into a dict."""
    p = Path(path)
    if p.is_dir():
        found = sorted(q.name for q in p.iterdir() if q.suffix in (".yaml", ".yml", ".toml"))
        hint = f" (it holds {', '.join(found[:5])})" if found else ""
        raise ConfigError([f"{str(p)!r} is a folder, not a config file{hint}: pass the YAML or TOML file itself"])
    if not p.is_file():
        raise ConfigError([f"config file {str(p)!r} does not exist"])
    text = p.read_text(encoding="utf-8")
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        import warnings

        warnings.warn(f"config file {str(p)!r} is empty: every setting takes its default (write the ones that "
                      "differ, see `medgr2 config show`)", UserWarning, stacklevel=2)
        return {}
    try:
        if p.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:  # noqa: BLE001 - parse errors become config errors
        raise ConfigError([f"cannot parse {p}: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ConfigError([f"{p}: the top level must be a mapping, not {type(data).__name__}"])
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` → (["a", "b", "c"], value) with the value parsed as a YAML scalar."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"override {item!r} must look like key.path=value"])
    import yaml

    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _ids(node: Any) -> set[int]:
    """The ids of every dict and list inside ``node`` (itself included)."""
    if isinstance(node, dict):
        return {id(node)}.union(*(_ids(v) for v in node.values()))
    if isinstance(node, list):
        return {id(node)}.union(*(_ids(v) for v in node))
    return set()


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply dotted overrides to a copy of ``data`` (numeric parts index lists).

    Where an override reaches into a section the data does not have, the section's defaults are
    filled in first. When an override renames a default component, the default's options are
    dropped (they belong to the default component); options that overrides set are kept.
    """
    out = _unshared_copy(data)
    from_defaults: set[int] = set()  # containers filled in from the defaults
    user_keys: dict[int, set[str]] = {}  # keys that overrides set, per container
    for item in overrides:
        path, value = parse_override(item)
        node: Any = out
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, list):
                try:
                    idx = int(part)
                    node[idx]
                except (ValueError, IndexError):
                    raise ConfigError([f"override {item!r}: {part!r} is not an index of a {len(node)}-item list"]) \
                        from None
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
            elif last:
                options = node.get("options")
                if part == "name" and value != node.get("name") and isinstance(options, dict) \
                        and id(options) in from_defaults:
                    node["options"] = {k: v for k, v in options.items() if k in user_keys.get(id(options), ())}
                node[part] = value
                user_keys.setdefault(id(node), set()).add(part)
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = _default_subtree(path[: i + 1])
                    from_defaults |= _ids(node[part])
                node = node[part]
    return out


def _unshared_copy(data: Any) -> Any:
    """A deep copy in which no two places share an object.

    YAML anchors/aliases (``&a`` / ``*a``) load as one shared object; ``copy.deepcopy`` keeps that
    sharing, so an override of one place would change every alias of it.
    """
    if isinstance(data, Mapping):
        return {k: _unshared_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_unshared_copy(v) for v in data]
    return copy.copy(data)


def _default_subtree(path: list[str]) -> Any:
    """The default value at ``path`` of RunConfig as plain data (so overrides merge into defaults).

    Under a component's ``options`` nothing is merged: the defaults there belong to the default
    component, and the chosen component's options model fills in its own.
    """
    if "options" in path:
        return {}
    node: Any = RunConfig().model_dump(mode="json")
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return copy.deepcopy(node) if isinstance(node, (dict, list)) else {}


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k != "options":
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _typed_field(annotation: Any, base: type) -> tuple[Any, bool]:
    """(the subclass of ``base`` a field annotation names, is_list), else (None, False): ``X``, ``X | None``,
    ``list[X]`` ... A ``base`` subclass without a ``kind`` (a base class itself) does not count."""
    origin = get_origin(annotation)
    if origin in (list, tuple, Sequence):
        inner, _ = _typed_field(get_args(annotation)[0], base)
        return inner, inner is not None
    if origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            t, is_list = _typed_field(arg, base)
            if t is not None:
                return t, is_list
        return None, False
    if isinstance(annotation, type) and issubclass(annotation, base) and annotation.kind:
        return annotation, False
    return None, False


def iter_component_specs(model: type[BaseModel], raw: Any, loc: str = "") -> Iterator[tuple[str, str, Any]]:
    """Yield ``(location, kind, raw_spec)`` for every component spec in raw config data."""
    if not isinstance(raw, Mapping):
        return
    for name, field in model.model_fields.items():
        if name not in raw:
            continue
        value, where = raw[name], f"{loc}{name}"
        spec_type, is_list = _typed_field(field.annotation, ComponentSpec)
        if spec_type is not None:
            items = list(enumerate(value)) if is_list and isinstance(value, list) else [(None, value)]
            for idx, item in items:
                if item is not None:
                    yield (where if idx is None else f"{where}.{idx}"), spec_type.kind, item
            continue
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            yield from iter_component_specs(ann, value, where + ".")


def _secret_fields(model: type[BaseModel]) -> list[str]:
    """Names of the fields of ``model`` that hold a ``SecretStr``."""
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        if ann is SecretStr or SecretStr in get_args(ann):
            out.append(name)
    return out


def _given(raw: Mapping[str, Any], loc: str) -> bool:
    """Whether raw data sets the config field at ``loc`` (a list index counts as its list)."""
    node: Any = raw
    for part in [p for p in loc.split(".") if not p.isdigit()]:
        if not isinstance(node, Mapping):
            return True  # replaced by something else: phase 1 reports it
        if part not in node:
            return False
        node = node[part]
    return True


def _specs_in_effect(raw: Mapping[str, Any], config: RunConfig | None = None) -> Iterator[tuple[str, str, Any]]:
    """The component specs a run would use: those of the validated ``config`` (defaults that depend on other
    fields resolved, e.g. ``evaluation.also``), else those in ``raw`` plus the defaults it leaves alone."""
    if config is not None:
        yield from iter_component_specs(RunConfig, config.model_dump(mode="json"))
        return
    yield from iter_component_specs(RunConfig, raw)
    for loc, kind, spec in iter_component_specs(RunConfig, RunConfig().model_dump(mode="json")):
        if not _given(raw, loc):
            yield loc, kind, spec


NAMED_COMPONENTS: dict[str, str] = {
    "evaluation.scorer": "scorer",
    "reward.labelling": "policy_labeller",
    "reward.calibrator": "calibrator",
    "policy.tiny_arch": "tiny_policy",
}
"""Config fields that name a registered component without options: location → kind."""


def _name_problems(raw: Mapping[str, Any], registry: Registry) -> list[str]:
    """Every field of :data:`NAMED_COMPONENTS` set in the config names a registered component."""
    problems = []
    for loc, kind in NAMED_COMPONENTS.items():
        section, _, key = loc.partition(".")
        node = raw.get(section)
        name = node.get(key) if isinstance(node, Mapping) else None
        if not isinstance(name, str) or (kind, name) in registry:
            continue
        try:
            registry.entry(kind, name)
        except UnknownComponentError as e:
            problems.append(f"{loc}: {e}")
    return problems


def _nested_specs(model: type[BaseModel], options: Mapping[str, Any], loc: str) -> Iterator[tuple[str, str, Any]]:
    """``(location, kind, {"name", "options"})`` for every component named inside ``options``."""
    for field_name, f in model.model_fields.items():
        ref, is_list = _typed_field(f.annotation, ComponentRef)
        if ref is None or field_name not in options:
            continue
        value = options[field_name]
        items = list(enumerate(value)) if is_list and isinstance(value, list) else [(None, value)]
        for idx, item in items:
            if isinstance(item, Mapping):
                where = f"{loc}.{field_name}" if idx is None else f"{loc}.{field_name}.{idx}"
                yield where, ref.kind, {"name": item.get(ref.name_field), "options": item.get("options") or {}}


def _component_problems(specs: Iterable[tuple[str, str, Any]], registry: Registry) -> list[str]:
    from medgr2.registry import suggest

    problems = []
    for loc, kind, spec in specs:
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            continue  # phase 1 reports the shape error
        options = spec.get("options") or {}
        if not isinstance(options, Mapping):
            continue  # phase 1 reports the shape error
        try:
            entry = registry.entry(kind, spec["name"])
            model = entry.options_model()
            for secret in _secret_fields(model):
                if secret in options:
                    problems.append(
                        f"{loc}.options.{secret}: secrets are never read from config files; remove it and set "
                        f"the environment variable instead ({kind} {spec['name']!r}: "
                        f"{model.model_fields[secret].description or 'see its docs'})"
                    )
            entry.validate_options({k: v for k, v in options.items() if k not in _secret_fields(model)})
            problems += _component_problems(_nested_specs(model, options, f"{loc}.options"), registry)
        except UnknownComponentError as e:
            failed = f" ({len(registry.warnings)} plugin(s) failed to load: {'; '.join(registry.warnings)})" \
                if registry.warnings else ""
            problems.append(f"{loc}.name: {e}{failed}")
        except OptionsError as e:
            for err in e.error.errors():
                where = ".".join(str(p) for p in err["loc"])
                msg = err["msg"]
                if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
                    msg = "unknown option." + suggest(str(err["loc"][0]), model.model_fields)
                elif "input" in err and not isinstance(err["input"], (dict, list)):
                    msg += f" (got {err['input']!r})"
                problems.append(f"{loc}.options.{where}: {msg} ({kind} {spec['name']!r})")
    return problems


def _structure_problems(error: ValidationError) -> list[str]:
    out = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            from medgr2.registry import suggest

            model: Any = RunConfig
            for part in err["loc"][:-1]:
                f = getattr(model, "model_fields", {}).get(part)
                ann = f.annotation if f is not None else None
                model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
                if model is None:
                    break
            hint = suggest(str(err["loc"][-1]), model.model_fields) if model is not None else ""
            msg = "unknown key." + hint
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
        out.append(f"{where}: {msg}")
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    *,
    registry: Registry | None = None,
    data: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Build the :class:`RunConfig` (defaults < file/``data`` < overrides) and validate it.

    With a ``registry``, the config's own ``plugins`` are loaded into it first (a relative
    ``.py`` path is looked up beside the config file, then in the working directory), then
    component names and options are checked too. Raises one :class:`ConfigError` listing every
    problem.
    """
    raw: dict[str, Any] = {}
    source = ""
    if path is not None:
        raw = read_config_file(path)
        source = str(path)
    if data is not None:
        raw = _deep_merge(raw, data)
    raw = _expand_short_forms(apply_overrides(raw, overrides))
    problems: list[str] = []
    config: RunConfig | None = None
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as e:
        problems += _structure_problems(e)
    if registry is not None:
        problems += _load_config_plugins(raw.get("plugins"), path, registry)
        # phase 2 sees every component that will be used: the defaults too, even when phase 1 failed
        problems += _component_problems(_specs_in_effect(raw, config), registry)
        problems += _name_problems(raw, registry)
    if problems or config is None:
        raise ConfigError(problems, source)
    return config


def _expand_short_forms(raw: dict[str, Any]) -> dict[str, Any]:
    """``reward.references`` / ``reward.grading`` are short for ``reward.grade_set.options.references`` /
    ``.grading`` (of the default ``four-grade`` builder unless ``reward.grade_set.name`` says otherwise)."""
    reward = raw.get("reward")
    if not isinstance(reward, Mapping) or not ({"references", "grading"} & set(reward)):
        return raw
    reward = dict(reward)
    spec = reward.get("grade_set")
    spec = dict(spec) if isinstance(spec, Mapping) else {"name": "four-grade"}
    options = dict(spec.get("options") or {}) if isinstance(spec.get("options") or {}, Mapping) else {}
    for key in ("references", "grading"):
        if key in reward:
            options[key] = reward.pop(key)
    spec["options"] = options
    reward["grade_set"] = spec
    return {**raw, "reward": reward}


def _load_config_plugins(specs: Any, path: str | os.PathLike[str] | None, registry: Registry) -> list[str]:
    """Load the config's ``plugins`` into ``registry``; each failure is a config problem."""
    if not isinstance(specs, list) or not specs or not all(isinstance(s, str) for s in specs):
        return []  # absent, or phase 1 reports the wrong type
    from medgr2.plugins import extend_registry
    from medgr2.registry import RegistryError

    resolved = []
    for spec in specs:
        beside = Path(path).parent / spec if path is not None else None
        is_file = spec.endswith(".py") or "/" in spec or os.sep in spec
        resolved.append(str(beside) if is_file and beside is not None and beside.is_file() else spec)
    try:
        return [f"plugins: {failure}" for failure in extend_registry(registry, resolved, strict=False)]
    except RegistryError as exc:
        return [f"plugins: {exc}"]


def resolved_options(spec: ComponentSpec, registry: Registry) -> BaseModel:
    """The validated options model of a component spec (defaults filled in)."""
    return registry.entry(spec.kind, spec.name).validate_options(spec.options)


def resolved_dict(config: RunConfig, registry: Registry | None = None) -> dict[str, Any]:
    """The config as plain data; with a registry, every component's options with defaults filled in
    (options with a ``resolve_for_run(config)`` method, e.g. the trainers', resolve their size-dependent
    defaults to the values the run uses)."""
    data = config.model_dump(mode="json")
    if registry is None:
        return data
    for loc, kind, spec in iter_component_specs(RunConfig, data):
        opts = registry.entry(kind, spec["name"]).validate_options(spec.get("options") or {})
        if callable(getattr(opts, "resolve_for_run", None)):
            opts = opts.resolve_for_run(config)
        spec["options"] = json.loads(opts.model_dump_json())
    return data


def dump_yaml(data: Any) -> str:
    """Plain data as block-style YAML, keys in their original order."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def env_secret(*names: str) -> SecretStr | None:
    """The first set environment variable of ``names`` as a ``SecretStr`` (``None`` if unset).

    Use it as ``Field(default_factory=lambda: env_secret("GEMINI_API_KEY"), exclude=True)`` so the
    secret is read from the environment only and never serialised.
    """
    for n in names:
        v = os.environ.get(n)
        if v:
            return SecretStr(v)
    return None


# ---------------------------------------------------------------- reference documentation


def _type_name(annotation: Any) -> str:
    """A short readable name for a field annotation (``int | None``, ``list[generator]`` ...)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin is Union or origin is types.UnionType:
        return " \\| ".join(_type_name(a) for a in args)
    if origin in (list, tuple, Sequence):
        return f"list[{_type_name(args[0])}]" if args else "list"
    if origin is dict:
        return "mapping"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, ComponentSpec):
        return f"component ({annotation.kind})"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    elif isinstance(value, list):
        value = [v.model_dump(mode="json", exclude_defaults=True) if isinstance(v, BaseModel) else v for v in value]
    elif isinstance(value, Path):
        value = str(value)
    return "`" + json.dumps(value, ensure_ascii=False) + "`"


def reference_rows(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(dotted path, type, default, description)`` for every setting of ``model``, depth first,
    escaped for Markdown tables.

    Nested sections are flattened (``generation.limit``); a component spec is one row (its
    ``name`` and ``options`` are described once, in docs/config.md).
    """
    rows = []
    for name, field in model.model_fields.items():
        path, ann = f"{prefix}{name}", field.annotation
        if isinstance(ann, type) and issubclass(ann, Section) and not issubclass(ann, ComponentSpec):
            rows += reference_rows(ann, path + ".")
            continue
        description = (field.description or "").replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")
        rows.append((path, _type_name(ann), _default_text(field), description))
    return rows


def reference_markdown(model: type[BaseModel] = RunConfig) -> str:
    """Markdown tables of every setting of ``model`` (one per top-level section), from its field descriptions."""
    groups: dict[str, list[tuple[str, str, str, str]]] = {}
    for row in reference_rows(model):
        head = row[0].split(".")[0] if "." in row[0] else ""
        groups.setdefault(head, []).append(row)
    out = []
    for head, rows in groups.items():
        section = model.model_fields[head].annotation if head else model
        title = f"`{head}`" if head else "Top level"
        doc = (section.__doc__ or "").strip().splitlines()[0] if section.__doc__ else ""
        out.append(f"### {title}\n\n{doc}\n\n| key | type | default | description |\n|---|---|---|---|")
        out += [f"| `{p}` | {t} | {d} | {desc} |" for p, t, d, desc in rows]
        out.append("")
    return "\n".join(out)
