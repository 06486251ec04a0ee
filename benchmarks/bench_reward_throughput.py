"""Scoring throughput of the MiniLM reward model: batch 32 vs batch 1 (goal ≥ 4×), same inputs, same run.

Inputs are graded IU X-ray reports when the shared data is there (else synthetic report-like
texts of varied length). Both settings score the same inputs after a warm-up; the scores must agree
within 1e-5 (batch invariance).

    .venv/bin/python benchmarks/bench_reward_throughput.py [--n 192] [--threads 2]

Measured here (2 CPU cores, 192 IU reports, ~120 tokens each): batch 1 40.0 inputs/s, batch 32
42.7 inputs/s (1.07x); scores agree within 3.1e-6. MiniLM at this length is compute-bound on CPU
(~25 ms of matrix products per input already keep both cores busy at batch 1, against ~2 ms of
per-call overhead), so batching cannot give much here: the goal of 4x, a GPU figure, is not met.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def inputs(n: int, seed: int) -> list:
    from medgr2.data import RewardInput

    tgz = Path(os.environ.get("MEDGR2_SHARED_DATA", REPO.parent / "shared" / "data")) / "reports-iu-xray" / \
        "NLMCXR_reports.tgz"
    rng = random.Random(seed)
    if tgz.is_file():
        from medgr2_reward.readers import read_iu_xray

        refs = read_iu_xray(tgz, limit=n)[0]
        return [RewardInput(question=r.question, answer=r.text) for r in refs]
    words = ["heart", "size", "normal", "lungs", "clear", "no", "pleural", "effusion", "pneumothorax", "mild", "opacity", "left", "base", "degenerative", "change", "thoracic", "spine", "impression", "acute", "cardiopulmonary", "abnormality"]
    return [RewardInput(question="Describe the findings of this chest X-ray.",
                        answer=" ".join(rng.choices(words, k=rng.randint(8, 90)))) for _ in range(n)]


def timed(rm, data, batch_size: int) -> tuple[float, list[float]]:
    rm.options = rm.options.model_copy(update={"score_batch_size": batch_size})
    t = time.perf_counter()
    scores = rm.score(data)
    return time.perf_counter() - t, scores


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=192, help="inputs scored per setting")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from medgr2_reward.model import MiniLMRewardModel
    from medgr2_reward.options import MiniLMOptions

    data = inputs(args.n, args.seed)
    rm = MiniLMRewardModel(MiniLMOptions(threads=args.threads, vision=False, max_length=256))
    rm.score(data[:8])  # warm-up: weights loaded, kernels initialised
    import torch

    t1, s1 = timed(rm, data, 1)
    t32, s32 = timed(rm, data, 32)
    worst = max(abs(a - b) for a, b in zip(s1, s32))
    lengths = [len(x.question) + len(x.answer) for x in data]
    print(f"inputs: {len(data)} (mean {sum(lengths) / len(lengths):.0f} chars), torch threads {torch.get_num_threads()}")
    print(f"batch 1 : {t1:7.2f} s  {len(data) / t1:7.1f} inputs/s")
    print(f"batch 32: {t32:7.2f} s  {len(data) / t32:7.1f} inputs/s")
    print(f"speed-up batch 32 / batch 1: {t1 / t32:.2f}x   (goal >= 4x)")
    print(f"max |score(b=1) - score(b=32)|: {worst:.2e}   (must be <= 1e-5)")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
