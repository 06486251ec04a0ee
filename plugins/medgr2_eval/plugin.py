"""Registration of the evaluation built-ins (light: no torch, lazy targets only)."""

from __future__ import annotations

from medgr2 import hookimpl

SCORER_TARGETS = {
    "medgr2": "medgr2_eval.scorers:medgr2",
    "med-r1": "medgr2_eval.scorers:med_r1",
    "omnimedvqa": "medgr2_eval.scorers:omnimedvqa",
    "medevalkit": "medgr2_eval.scorers:medevalkit",
    "vlmevalkit": "medgr2_eval.scorers:vlmevalkit",
    "vlmevalkit-2024": "medgr2_eval.scorers:vlmevalkit_2024",
}


@hookimpl
def medgr2_register_scorers(registry) -> None:
    """The published scoring protocols (see ``medgr2 eval scorers``)."""
    for name, target in SCORER_TARGETS.items():
        config = "medgr2_eval.options:VLMEvalKitOptions" if name.startswith("vlmevalkit") else None
        registry.add(name, target, config=config)


@hookimpl
def medgr2_register_evaluators(registry) -> None:
    """The ``vqa`` evaluator: batched greedy generation over VQA samples, then a named scorer."""
    registry.add(
        "vqa",
        "medgr2_eval.evaluator:VQAEvaluator",
        config="medgr2_eval.options:VQAEvaluatorOptions",
        description="Run a policy over VQA samples (batched greedy), write predictions + report",
    )


@hookimpl
def medgr2_register_commands(cli) -> None:
    """``medgr2 eval ...``: score prediction files, run evaluations, and the paper's studies."""
    from medgr2_eval.cli import register

    register(cli)


@hookimpl
def medgr2_register_report_sections(registry) -> None:
    """``defects``: R_φ's AUROC per defect kind and the defect shares before and after filtering."""
    registry.add("defects", "medgr2_eval.defects:DefectsSection",
                 description="R_φ's AUROC per recorded defect kind; each kind's share before and after the filters")
