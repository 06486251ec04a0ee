"""Reading prediction files and scoring them under a named protocol."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medgr2.data import LETTERS, EvalReport, Prediction
from medgr2.registry import Registry
from medgr2_eval.parsing import gt_index, parse_options
from medgr2_eval.scorers import Verdict

REQUIRED = ("question", "gt_answer", "model_answer")
_ALIASES = {
    "id": "question_id",
    "qid": "question_id",
    "question_type": "question_type",
    "source": "dataset",
    "dataset_name": "dataset",
}


_MED_R1_KEYS = {"problem": "question", "solution": "gt_answer", "ground_truth": "gt_answer",
                "model_output": "model_answer"}
"""Med-R1's keys (``Splits/*.json`` records and ``src/eval_vqa/test_*.py`` result files), used when
the record lacks the MedGR2 key."""
_ANSWER_TAG = re.compile(r"^\s*<answer>\s*([A-H])\s*</answer>\s*$")


class PredictionsFileError(ValueError):
    """A predictions file cannot be read; the message names the line and the fix."""


def _from_med_r1(rec: dict[str, Any]) -> dict[str, Any]:
    """A Med-R1 record in MedGR2 keys: ``problem`` -> question, ``solution`` / ``ground_truth`` ->
    gt_answer, ``model_output`` -> model_answer; a result's nested input example (``question``:
    ``{"problem": ..., "solution": ...}``) is unwrapped."""
    rec = dict(rec)
    nested = rec.get("question")
    if isinstance(nested, dict):
        rec.pop("question")
        for k, v in nested.items():
            rec.setdefault(k, v)
    for k, target in _MED_R1_KEYS.items():
        if k in rec and target not in rec:
            rec[target] = rec[k]
    return rec


def _options(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):  # {"A": "normal", "B": "pneumonia"} or {"option_A": ...}
        items = sorted(value.items(), key=lambda kv: str(kv[0])[-1:])
        return tuple(str(v) for k, v in items if v is not None and str(k)[-1:].upper() in LETTERS)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    raise PredictionsFileError(f"{where}: 'options' must be a list of option texts or a letter->text mapping")


def prediction_from_record(rec: dict[str, Any], where: str = "record", index: int = 0) -> Prediction:
    """A :class:`Prediction` from one JSON record (MedGR2 / OmniMedVQA-style keys, or Med-R1's
    ``problem`` / ``solution`` / ``model_output``; extra keys ignored).

    Options come from ``options`` (a list, or a mapping ``{"A": ...}``), else from ``option_A``..
    ``option_H`` keys, else they are left empty (and parsed from the question when scoring). A
    truth written as Med-R1's ``<answer> C </answer>`` becomes the text of option C when the
    options (given or parsed from the question) have a C.
    """
    if not isinstance(rec, dict):
        raise PredictionsFileError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    rec = _from_med_r1(rec)
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise PredictionsFileError(
            f"{where}: missing key(s) {', '.join(missing)}; every record needs question, gt_answer and "
            "model_answer (options, question_id, modality, question_type, dataset are optional)"
        )
    data = {_ALIASES.get(k, k): v for k, v in rec.items()}
    opts = _options(data.get("options"), where)
    if not opts:
        opts = tuple(str(data[f"option_{c}"]) for c in LETTERS if data.get(f"option_{c}") is not None)
    scores = data.get("option_scores")
    gt = str(data["gt_answer"])
    tag = _ANSWER_TAG.match(gt)
    if tag:  # Med-R1's truth "<answer> C </answer>": the text of option C, so every protocol reads it
        shown = opts or parse_options(str(data["question"]))
        letter = LETTERS.index(tag.group(1))
        gt = shown[letter] if letter < len(shown) else gt
    return Prediction(
        question_id=str(data.get("question_id", index)),
        question=str(data["question"]),
        options=opts,
        gt_answer=gt,
        model_answer="" if data["model_answer"] is None else str(data["model_answer"]),
        modality=None if data.get("modality") is None else str(data["modality"]),
        question_type=None if data.get("question_type") is None else str(data["question_type"]),
        dataset=None if data.get("dataset") is None else str(data["dataset"]),
        option_scores=tuple(float(x) for x in scores) if scores else None,
    )


def _read_jsonl(p: Path, text: str) -> list[Prediction]:
    preds: list[Prediction] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:  # fast path: a line written from a Prediction (the evaluator's own files)
            preds.append(Prediction.model_validate_json(line))
            continue
        except ValidationError:
            pass
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise PredictionsFileError(f"{p}:{n}: not valid JSON ({e.msg}); one JSON object per line") from e
        preds.append(prediction_from_record(rec, f"{p}:{n}", len(preds)))
    return preds


def _results_object(p: Path, text: str) -> Any:
    """The ``results`` list of a single JSON object (Med-R1's result files), else ``None``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None  # JSONL: read line by line
    return data.get("results") if isinstance(data, dict) else None


def read_predictions(path: str | Path) -> list[Prediction]:
    """Predictions from a JSONL file (or a JSON array file), with errors naming the line."""
    p = Path(path)
    if not p.is_file():
        raise PredictionsFileError(f"predictions file {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PredictionsFileError(f"{p}: not valid JSON ({e})") from e
        preds = [prediction_from_record(r, f"{p} item {i}", i) for i, r in enumerate(data)]
    elif text.lstrip().startswith("{") and isinstance(results := _results_object(p, text), list):
        preds = [prediction_from_record(r, f"{p} results[{i}]", i) for i, r in enumerate(results)]
    else:
        preds = _read_jsonl(p, text)
    if not preds:
        raise PredictionsFileError(f"{p}: no predictions in the file")
    return preds


def options_of(preds: Sequence[Prediction]) -> list[tuple[str, ...]]:
    """Each prediction's options, parsed from its question when the record has none."""
    return [p.options or parse_options(p.question) for p in preds]


def as_verdict(result: Any) -> Any:
    """A scorer's result as a verdict: ``Verdict``-like objects pass; a bare ``bool`` (a scorer that
    only says right/wrong) becomes a valid verdict with that correctness."""
    if isinstance(result, bool):
        return Verdict(result, True)
    if hasattr(result, "correct") and hasattr(result, "valid"):
        return result
    raise TypeError(
        f"a scorer returned {type(result).__name__}; return a Verdict(correct, valid, chosen, index) "
        "or a bool"
    )


def score_all(
    preds: Sequence[Prediction], scorer: Callable[..., Any], options: Sequence[Sequence[str]] | None = None
) -> list[Any]:
    """One verdict per prediction under ``scorer``, called with keyword arguments
    ``model_answer``, ``options``, ``gt_answer`` (so any parameter order works)."""
    options = options_of(preds) if options is None else options
    return [
        as_verdict(scorer(model_answer=p.model_answer, options=o, gt_answer=p.gt_answer))
        for p, o in zip(preds, options)
    ]


def resolve_scorer(
    scorer: str | Callable[..., Any], registry: Registry | None = None, options: dict[str, Any] | None = None
) -> tuple[str, Callable[..., Any]]:
    """``(name, function)`` of a scorer given by registered name (or as a function)."""
    if callable(scorer):
        return getattr(scorer, "__name__", "custom"), scorer
    from medgr2.plugins import ensure_registry

    registry = ensure_registry(registry)
    return scorer, registry.create("scorer", scorer, options)


def per_item_records(
    preds: Sequence[Prediction], verdicts: Sequence[Any], options: Sequence[Sequence[str]], scorer: str
) -> list[dict[str, Any]]:
    """One record per prediction: what the protocol read out of the answer and its verdict.

    Keys: ``item`` (position in the file), ``question_id``, ``scorer``, ``gt_answer``,
    ``gt_letter`` (the first option equal to the truth, as :func:`~medgr2_eval.parsing.gt_index`
    finds it; ``None`` when it is none of them; MedEvalKit's own truth is the *last* equal
    option), ``model_answer``,
    ``extracted`` (what the rule read: a normalised text, a tag token, a letter, a parsed string;
    ``None`` for rules that read the whole answer), ``letter`` and ``chosen`` (the option the
    answer maps to, ``None`` when it maps to none), ``valid`` and ``correct``. Two protocols'
    files line up item by item, so they can be diffed."""
    out = []
    for n, (p, v, o) in enumerate(zip(preds, verdicts, options)):
        index = getattr(v, "index", None)
        g = gt_index(o, p.gt_answer) if o else None
        out.append(
            {
                "item": n,
                "question_id": p.question_id,
                "scorer": scorer,
                "gt_answer": p.gt_answer,
                "gt_letter": None if g is None else LETTERS[g],
                "model_answer": p.model_answer,
                "extracted": getattr(v, "extracted", None),
                "letter": LETTERS[index] if isinstance(index, int) and 0 <= index < len(LETTERS) else None,
                "chosen": getattr(v, "chosen", None),
                "valid": bool(v.valid),
                "correct": bool(v.correct),
            }
        )
    return out


def write_per_item(path: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    """Write per-item records as JSONL (parent folders created); a clear error for a folder path."""
    p = Path(path)
    if p.is_dir():
        raise PredictionsFileError(
            f"--per-item {str(p)!r} is a folder: give a file path, e.g. {p / 'items.jsonl'}"
        )
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return p


def score_predictions(
    preds: Sequence[Prediction],
    scorer: str | Callable[..., Any] = "medgr2",
    *,
    registry: Registry | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    model: str | None = None,
    per_item: str | Path | None = None,
) -> EvalReport:
    """Score predictions under ``scorer`` and compute every metric (accuracy with invalid answers
    counted wrong and skipped, per-group breakdowns, macro F1, balanced accuracy, AUROC when
    option scores exist, bootstrap 95 % CIs). Options missing from a prediction are parsed from
    its question text. With ``per_item``, each item's extracted answer and verdict are also
    written there as JSONL (:func:`per_item_records`)."""
    from medgr2_eval.metrics import build_report

    name, fn = resolve_scorer(scorer, registry)
    options = options_of(preds)
    verdicts = score_all(preds, fn, options)
    if per_item is not None:
        write_per_item(per_item, per_item_records(preds, verdicts, options, name))
    meta = {
        "n_without_options": sum(1 for o in options if not o),
        "n_gt_not_an_option": sum(
            1 for p, o in zip(preds, options) if o and gt_index(o, p.gt_answer) is None
        ),
    }
    return build_report(
        preds, verdicts, name, options=options, bootstrap=bootstrap, seed=seed, model=model, meta=meta
    )
