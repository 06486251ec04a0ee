"""Does R_φ read the image? Its defect AUROC on a finished run's candidates, as scored and with images swapped.

For a run whose generator recorded its defects (the quickstart's ``labels`` builder does), this loads
R_φ v0 (the reward-init version), scores the candidates of one cycle as they are, then again with each
image swapped for another of the same modality (``medgr2_eval.defects.swap_images``), and prints the
AUROC per defect kind side by side. An R_φ that reads the image loses AUROC when the images no longer
fit; one that reads only the text scores both the same (issue 20; docs/reward-model.md).

    python examples/experiments/rphi_image_swap.py runs/quickstart [--cycle 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("run", type=Path, help="a run folder (with manifest.json)")
    parser.add_argument("--cycle", type=int, default=1, help="whose scored candidates (default 1)")
    args = parser.parse_args(argv)

    from medgr2_eval.defects import defect_report, swap_images

    import medgr2
    from medgr2.data import RewardInput, VQASample
    from medgr2.store import read_jsonl

    run = args.run
    rm = medgr2.load_reward_model(run / "cycle-000" / "reward-init")  # R_φ v0: reward-init's work folder
    scored = read_jsonl(run / f"cycle-{args.cycle:03d}" / "score" / "scored.jsonl", VQASample)
    rows: dict[str, dict[str, float]] = {}
    for name, candidates in (("as scored", scored), ("images swapped", swap_images(scored))):
        scores = rm.score([RewardInput.from_sample(s) for s in candidates])
        report = defect_report(candidates, scores={s.id: float(x) for s, x in zip(candidates, scores, strict=True)})
        for kind, figures in report["kinds"].items():
            if figures.get("auroc") is not None:
                rows.setdefault(kind, {})[name] = figures["auroc"]
    if not rows:
        raise SystemExit(f"{run}: no defect kinds recorded in cycle {args.cycle}'s candidates (the generator needs "
                         "a defect model, e.g. labels with defects: {wrong_confusable: 0.2})")
    print(f"R_φ {rm.version}, {len(scored)} candidates of cycle {args.cycle}: defect AUROC")
    print(f"{'kind':<26}{'as scored':>11}{'images swapped':>16}")
    for kind, r in rows.items():
        print(f"{kind:<26}{r['as scored']:>11.3f}{r['images swapped']:>16.3f}")


if __name__ == "__main__":
    main()
