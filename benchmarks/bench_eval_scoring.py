"""Benchmark: scoring 100k predictions (goal < 5 s) under each protocol, metrics included.

Builds 100k synthetic OmniMedVQA-style predictions (2-5 options, 8 modalities, 5 question types,
40 datasets, a mix of exact, sloppy, lettered, free-text and invalid answers; half with option
scores so AUROC is computed), then times, side by side in one run:

* scoring + every metric (``score_predictions``) from in-memory predictions, per scorer;
* reading the JSONL file + scoring under ``medgr2`` (the ``medgr2 eval score`` path);
* the metrics alone (per-group accuracy; F1, balanced acc. and AUROC by scikit-learn; binomial bootstrap).

Run: ``.venv/bin/python benchmarks/bench_eval_scoring.py [N]``
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from medgr2.data import Prediction
from medgr2_eval.prediction_files import score_predictions
from medgr2.store import write_jsonl
from medgr2_eval.metrics import build_report
from medgr2_eval.prediction_files import options_of, read_predictions, score_all
from medgr2_eval.scorers import SCORERS

MODALITIES = ["ct", "mri", "xray", "ultrasound", "dermoscopy", "fundus", "oct", "microscopy"]
QTYPES = [
    "modality_recognition",
    "anatomy_identification",
    "disease_diagnosis",
    "lesion_grading",
    "other_biological_attributes",
]
CLASSES = [f"finding {i}" for i in range(300)]


def synth(n: int, seed: int = 0) -> list[Prediction]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        opts = rng.sample(CLASSES, rng.randint(2, 5))
        gt = rng.choice(opts)
        pick = gt if rng.random() < 0.6 else rng.choice(opts)
        letter = "ABCDE"[opts.index(pick)]
        style = rng.random()
        answer = (
            pick
            if style < 0.4
            else f"{pick.title()}."
            if style < 0.6
            else f"{pick} ({letter})"
            if style < 0.75
            else f"The answer is {letter}."
            if style < 0.85
            else f"<answer>{letter}</answer>"
            if style < 0.93
            else "I am not sure"
        )
        question = (
            f"Question {i % 977}? Please choose one of the following: {' or '.join(opts)}. "
            "You must pick only one answer."
        )
        scores = tuple(rng.gauss(2.0 if o == gt else 0.0, 1.0) for o in opts) if i % 2 else None
        out.append(
            Prediction(
                question_id=str(i),
                question=question,
                options=tuple(opts) if i % 3 else (),
                gt_answer=gt,
                model_answer=answer,
                modality=MODALITIES[i % 8],
                question_type=QTYPES[i % 5],
                dataset=f"ds{i % 40}",
                option_scores=scores,
            )
        )
    return out


def timed(fn):
    """(wall seconds, CPU seconds of this process, result): CPU time shows the cost when other
    processes share the cores (wall time then overstates it)."""
    t, c = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - t, time.process_time() - c, result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    preds = synth(n)
    print(f"{n:,} predictions (1/3 without options: parsed from the question; 1/2 with option scores)")
    print(f"{'scorer':<12} {'wall s':>7} {'cpu s':>7} {'preds/s (cpu)':>14}  accuracy  invalid  auroc")
    for name in SCORERS:
        s, c, rep = timed(lambda fn=SCORERS[name]: score_predictions(preds, fn))
        print(
            f"{name:<12} {s:7.2f} {c:7.2f} {n / c:14,.0f}  {rep.overall.accuracy:.4f}  {rep.overall.invalid:7d}  "
            f"{rep.overall.auroc}"
        )
    options = options_of(preds)
    verdicts = score_all(preds, SCORERS["medgr2"], options)
    s_metrics, c_metrics, _ = timed(lambda: build_report(preds, verdicts, "medgr2", options=options))
    s_parse, c_parse, _ = timed(lambda: options_of(preds))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "predictions.jsonl"
        write_jsonl(path, preds)
        s_file, c_file, rep = timed(lambda: score_predictions(read_predictions(path), "medgr2"))
    print(
        f"metrics only (per-group acc/F1/bal.acc/AUROC/bootstrap 1000): wall {s_metrics:.2f} s, cpu {c_metrics:.2f} s"
    )
    print(f"option parsing only: wall {s_parse:.2f} s, cpu {c_parse:.2f} s")
    print(
        f"read JSONL + medgr2 scoring + metrics (the `eval score` path): wall {s_file:.2f} s, cpu {c_file:.2f} s "
        f"({'meets' if c_file < 5 else 'MISSES'} the < 5 s goal in CPU time)"
    )


if __name__ == "__main__":
    main()
