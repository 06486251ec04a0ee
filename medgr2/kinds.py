"""Every component kind, declared once.

The registry (which kinds exist, which are built as ``target(options)``), the registrar hooks of
:mod:`medgr2.hookspecs`, config validation and ``docs/plugin-hooks.md`` are all built from
:data:`KINDS`. Adding a kind is one :class:`Kind` here plus its Protocol in
:mod:`medgr2.interfaces`; ``medgr2 plugins docs --update docs/plugin-hooks.md`` regenerates the guide
(a test fails while it is stale).

This module imports nothing from medgr2, so every other core module may import it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One component kind.

    Attributes:
        name: The kind as written in the registry and in ``medgr2 plugins list`` (``"generator"``).
        hook: The registrar hook a plugin implements to add components of this kind.
        protocol: The name of the ``typing.Protocol`` (or callable alias) in :mod:`medgr2.interfaces`
            that a built component satisfies.
        instantiated: ``True``: the registry builds ``target(options)``. ``False``: the target is a
            plain function or object, returned as is (options, when registered, bound as keyword
            arguments; unset options take the options model's defaults).
        summary: One line for listings.
        doc: What an implementation must do (the hook's documentation).
        example: A ``registry.add(...)`` line for the docs.
    """

    name: str
    hook: str
    protocol: str
    instantiated: bool
    summary: str
    doc: str
    example: str = ""


KINDS: tuple[Kind, ...] = (
    Kind("dataset", "medgr2_register_datasets", "DatasetSource", True, "seed data loaders",
         "A target builds an object satisfying `medgr2.interfaces.DatasetSource` from its validated options: "
         "`load()` returns a `SeedSet` of labelled `SeedItem`s, ready-made `VQASample`s and `Reject`s "
         "(unreadable records, with reasons; never raised). Splits are assigned deterministically and grouped "
         "by subject where the metadata has one.",
         'registry.add("csv", "my_pkg.sources:CsvSource", config="my_pkg.options:CsvOptions")'),
    Kind("generator", "medgr2_register_generators", "Generator", True, "writes VQA samples (and judges)",
         "A target builds a `medgr2.interfaces.Generator`: `generate(items, context) -> GenerationResult`. It "
         "validates every sample and returns invalid ones as `Reject`s with a reason, is resumable (calling it "
         "again with the same `context.work_dir` does only the missing work) and honours `context.stop`. A "
         "generator that also has `complete_json` satisfies `medgr2.interfaces.Judge` and can be `reward.judge`."),
    Kind("generator_updater", "medgr2_register_generator_updaters", "GeneratorUpdater", True,
         "updates the generator from high-reward data",
         "A target builds a `medgr2.interfaces.GeneratorUpdater`: `update(kept, context) -> {\"version\": str, "
         "\"options\": {...}}` turns a cycle's kept, scored samples into the next version of the generator "
         "(Algorithm 1, line 14): the returned options are merged into `generation.generator.options` from the "
         "next cycle on, and the version is recorded in the cycle ledger. `context.work_dir` is a run-level "
         "folder kept across cycles. The built-in `exemplar-bank` keeps a versioned bank of top-reward exemplars "
         "per modality × question type for the API generators' meta-cognitive prompt. Chosen by "
         "`generation.update`."),
    Kind("reward_model", "medgr2_register_reward_models", "RewardModel", True, "R_φ",
         "A target builds a `medgr2.interfaces.RewardModel`: `score(inputs, context=None) -> list[float]` on "
         "the paper's scale [−6, 10], independent of batch size and order; `train(examples, context, "
         "eval_examples=())`, `save(path)`, `load(path)` and a `version` attribute that goes into every "
         "`RewardBreakdown`."),
    Kind("grade_set", "medgr2_register_grade_sets", "GradeSetBuilder", True,
         "builds R_φ's graded training set",
         "A target builds a `medgr2.interfaces.GradeSetBuilder`: `build(request, context) -> GradeSet`, the "
         "graded examples R_φ v0 is trained on (train and held-out), from the reference texts of its own "
         "options and the reference samples the stage passes in. The built-in `four-grade` writes the paper's "
         "scheme (original 10, synonyms 6, phrase deletion 0, irrelevant −6). Chosen by `reward.grade_set`."),
    Kind("policy_labeller", "medgr2_register_policy_labellers", "PolicyLabeller", True,
         "labels policy samples for R_φ retraining",
         "A target builds a `medgr2.interfaces.PolicyLabeller`: `label(samples, policy, context, tools) -> "
         "list[GradedExample]`, the new R_φ training data of one cycle (Algorithm 1, step 4). `tools` carries "
         "the evaluator (the policy's answers) and the judge, when configured. Built-ins: `match`, `judge`, "
         "`grade`. Chosen by `reward.labelling`."),
    Kind("calibrator", "medgr2_register_calibrators", "Calibrator", True, "R_φ calibration report",
         "A target builds a `medgr2.interfaces.Calibrator`: `write(folder, scores, targets, grades, version) "
         "-> dict[str, float]` writes a reward model's held-out calibration next to its checkpoint and returns "
         "its metrics (at least `spearman`, `mse`, `pairwise_accuracy`). Chosen by `reward.calibrator`."),
    Kind("filter", "medgr2_register_filters", "Filter", True, "keeps or drops samples",
         "A target builds a `medgr2.interfaces.Filter`: `apply(samples, kept, context) -> "
         "list[FilterDecision]`, exactly one decision per input sample, in order, each with a reason. Facts of "
         "the run reach it through `context` (`context.eval_samples`, `context.allow_overlap`)."),
    Kind("trainer", "medgr2_register_trainers", "PolicyTrainer", True, "SFT, GRPO ...",
         "A target builds a `medgr2.interfaces.PolicyTrainer`: `train(samples, model_path, output_dir, "
         "context) -> TrainResult`, resuming from the last complete checkpoint in `output_dir`. Import torch "
         "and TRL inside its methods or behind a lazy target, never at module level of the plugin."),
    Kind("tiny_policy", "medgr2_register_tiny_policies", "TinyModelFactory", False,
         "builds an offline tiny starting policy",
         "A target is a `medgr2.interfaces.TinyModelFactory`: `f(out_dir, *, seed) -> Path` writes a small "
         "VLM with random weights that loads offline (no hub download). The loop uses it when `policy.model` "
         "is unset; `policy.tiny_arch` names it."),
    Kind("evaluator", "medgr2_register_evaluators", "Evaluator", True, "runs a policy over a benchmark",
         "A target builds a `medgr2.interfaces.Evaluator`: `evaluate(samples, model_path, output_dir, "
         "context) -> EvalReport`, writing `predictions.jsonl` (`Prediction` records) under `output_dir`. "
         "The scoring protocol and answer format arrive as `context.scorer` and `context.answer_format`."),
    Kind("reward_term", "medgr2_register_reward_terms", "RewardTerm", False, "GRPO reward terms",
         "A target is a plain function `f(completions, **kwargs) -> list[float]`, like TRL's `trl/rewards`, "
         "documented with a doctest. `kwargs` carries the dataset columns (`answer`, `options`, `images`, "
         "`image_ref` ...), one value per completion. Options, when registered, are bound to the function as "
         "keyword arguments."),
    Kind("scorer", "medgr2_register_scorers", "Scorer", False, "a named answer-scoring protocol",
         "A target is a documented function that decides whether a model answer matches the ground truth "
         "under one published rule; its docstring names the source of the rule. Reports always name the "
         "scorer they used."),
    Kind("image_loader", "medgr2_register_image_loaders", "ImageLoader", False, "decodes one kind of ImageRef",
         "Keyed by `ImageRef.loader`. A target is `f(ref: ImageRef) -> PIL.Image.Image`. It must refuse paths "
         "that escape the reference's root: resolve them with `medgr2.images.resolve_inside(root, relative)`."),
    Kind("prompt", "medgr2_register_prompts", "PromptStrategy", False, "a generation prompt template",
         "A target is a prompt template object or a path to a versioned template file; the built-ins are "
         "`direct`, `step_by_step` and `meta_cognitive`. Registering an existing name with `override=True` "
         "replaces a built-in template."),
    Kind("report_section", "medgr2_register_report_sections", "RunReportSection", True,
         "a section of the run report",
         "A target builds a `medgr2.interfaces.RunReportSection`: `render(run) -> ReportSection | None` reads "
         "the run's files that its own plugin wrote and returns a titled block of the HTML report (None when "
         "it has nothing to show), so the core report never reads plugin files. Sections appear in `order`."),
)
"""Every component kind, in the order listings and docs show them."""

KIND_NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}


def kind(name: str) -> Kind:
    """The :class:`Kind` called ``name`` (``KeyError`` for an unknown one)."""
    return BY_NAME[name]


HOOKS_BEGIN = "<!-- BEGIN GENERATED: medgr2 kinds -->"
HOOKS_END = "<!-- END GENERATED: medgr2 kinds -->"


def hooks_markdown() -> str:
    """The kinds table and one section per registrar hook, as ``docs/plugin-hooks.md`` shows them."""
    lines = ["| kind | hook | built with | contract |", "|---|---|---|---|"]
    for k in KINDS:
        built = "`target(options)`" if k.instantiated else "returned as is (options bound as keyword arguments)"
        lines.append(f"| `{k.name}` | `{k.hook}` | {built} | `medgr2.interfaces.{k.protocol}` |")
    lines += ["", "## Registrar hooks", ""]
    for k in KINDS:
        lines += [f"### {k.hook}(registry)", "", f"Register components of kind `{k.name}` ({k.summary}). {k.doc}", ""]
        if k.example:
            lines += ["```python", k.example, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def replace_hooks_markdown(text: str) -> str:
    """``text`` (docs/plugin-hooks.md) with its generated region brought up to date."""
    start, end = text.find(HOOKS_BEGIN), text.find(HOOKS_END)
    if start < 0 or end < start:
        raise ValueError(f"markers {HOOKS_BEGIN!r} ... {HOOKS_END!r} not found")
    return text[: start + len(HOOKS_BEGIN)] + "\n\n" + hooks_markdown() + "\n" + text[end:]
