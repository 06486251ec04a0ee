"""Benchmark: hand-written code against the well-kept library doing the same job, side by side.

For each function the project once wrote by hand (issue 21, "libraries where they serve") it prints
the hand-written time, the library time, their ratio and the largest difference of the results:

* macro-F1 and balanced accuracy per group, option-level AUROC per group: the former vectorised
  numpy code (kept below as the reference) against ``sklearn.metrics`` (what ``medgr2_eval.metrics``
  uses now);
* the accuracy's 95 % bootstrap interval: the binomial draw of ``medgr2_eval.metrics`` against
  ``scipy.stats.bootstrap`` (percentile method, resampling the 0/1 outcomes);
* Spearman's correlation of R_phi calibration: the former numpy ranks + ``corrcoef`` against
  ``scipy.stats.spearmanr`` (what ``medgr2_reward.calibration`` uses now);
* MinHash signatures of the dedup filter: datasketch's ``MinHash.bulk`` with CRC-32 as the shingle hash
  (what ``medgr2_filters.dedup`` uses) against datasketch's default SHA-1 hash, by time and by the error of
  the Jaccard estimate;
* near-duplicate candidates: the dedup filter's joint (text band x image band) index against
  datasketch's ``MinHashLSH`` (text candidates, then the image-hash check), by time and by the pairs found;
* dHash / aHash: ``medgr2_filters.imagehash`` against the ``imagehash`` package, by time on small and
  large images, by how many noised copies stay within the dedup distance (5 bits) and by what a
  16-bit image (DICOM-like) hashes to.

The data are synthetic (seeded). The machine may be shared: timings are the best of ``--repeat`` runs.

Run: ``.venv/bin/python benchmarks/bench_libraries.py [--n 100000] [--texts 50000] [--repeat 3]``
(``imagehash`` is in the ``dev`` extra; without it that section is skipped).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from medgr2_eval.metrics import Outcomes, _auroc, _bootstrap_ci, _class_metrics
from medgr2_reward.calibration import spearman


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(best wall seconds over ``repeat`` runs, the last result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def row(name: str, hand: float, lib: float, used: str, diff: str) -> None:
    """One line: times, which is faster and by how much, which one medgr2 uses, how the results differ."""
    faster = "hand" if hand < lib else "library"
    ratio = max(hand, lib) / max(min(hand, lib), 1e-9)
    print(f"{name:<34} {hand:9.4f} {lib:9.4f}  {faster:>7} x{ratio:<6.1f} {used:>7}  {diff}")


# ---------------------------------------------------------------- the former hand-written metrics
def hand_class_metrics(g: np.ndarray, n_groups: int, o: Outcomes) -> tuple[np.ndarray, np.ndarray]:
    """Macro F1 and balanced accuracy per group, vectorised over groups (medgr2 before issue 21)."""
    n_classes = int(max(o.gt_class.max(initial=0), o.pred_class.max(initial=0))) + 1
    gt_key = g * n_classes + o.gt_class
    has_pred = o.pred_class >= 0
    pred_key = g[has_pred] * n_classes + o.pred_class[has_pred]
    keys, inv = np.unique(np.concatenate([gt_key, pred_key]), return_inverse=True)
    gt_inv, pred_inv = inv[: len(gt_key)], inv[len(gt_key) :]
    support = np.bincount(gt_inv, minlength=len(keys)).astype(float)
    tp = np.bincount(gt_inv, weights=o.correct.astype(float), minlength=len(keys))
    predicted = np.bincount(pred_inv, minlength=len(keys)).astype(float)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    key_group = keys // n_classes
    n_labels = np.bincount(key_group, minlength=n_groups).astype(float)
    n_labels = np.where(n_labels > 0, n_labels, np.nan)
    macro_f1 = np.bincount(key_group, weights=f1, minlength=n_groups) / n_labels
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    n_sup = np.bincount(key_group, weights=(support > 0).astype(float), minlength=n_groups)
    bal = np.bincount(key_group, weights=recall, minlength=n_groups) / np.where(n_sup > 0, n_sup, np.nan)
    return macro_f1, bal


def hand_auroc(g: np.ndarray, n_groups: int, o: Outcomes) -> np.ndarray:
    """Pooled AUROC per group from average ranks, vectorised over groups (medgr2 before issue 21)."""
    out = np.full(n_groups, np.nan)
    score, label, group = o.score_prob, o.score_is_gt, g[o.score_item]
    order = np.lexsort((score, group))
    s_sorted, g_sorted = score[order], group[order]
    new_run = np.ones(len(order), dtype=bool)
    new_run[1:] = (s_sorted[1:] != s_sorted[:-1]) | (g_sorted[1:] != g_sorted[:-1])
    run_id = np.cumsum(new_run) - 1
    pos = np.arange(len(order), dtype=float)
    run_mean = np.bincount(run_id, weights=pos) / np.bincount(run_id)
    first = np.ones(len(order), dtype=bool)
    first[1:] = g_sorted[1:] != g_sorted[:-1]
    group_start = np.zeros(n_groups)
    group_start[g_sorted[first]] = pos[first]
    ranks = np.empty(len(order))
    ranks[order] = run_mean[run_id] - group_start[g_sorted] + 1
    n_pos = np.bincount(group, weights=label.astype(float), minlength=n_groups)
    n_neg = np.bincount(group, minlength=n_groups) - n_pos
    rank_sum = np.bincount(group, weights=np.where(label, ranks, 0.0), minlength=n_groups)
    ok = (n_pos > 0) & (n_neg > 0)
    out[ok] = (rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    return out


def synth_outcomes(n: int, seed: int = 0) -> tuple[Outcomes, list[tuple[str, np.ndarray, int]]]:
    """Outcomes shaped like ``bench_eval_scoring``: 300 classes, 2-5 options, 7 % invalid, half the items
    with option scores (rounded, so there are ties), and the four breakdowns of a report."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 300, n)
    valid = rng.random(n) > 0.07
    correct = valid & (rng.random(n) < 0.6)
    pred = np.where(correct, gt, rng.integers(0, 300, n))
    pred = np.where(valid, pred, -1)
    correct = valid & (pred == gt)
    k = rng.integers(2, 6, n)
    scored = np.flatnonzero(np.arange(n) % 2 == 1)
    item = np.repeat(scored, k[scored])
    is_gt = np.concatenate([np.arange(m) == 0 for m in k[scored]])
    raw = np.round(rng.normal(np.where(is_gt, 2.0, 0.0), 1.0), 1)
    starts = np.flatnonzero(np.r_[True, item[1:] != item[:-1]])
    reps = np.diff(np.r_[starts, len(raw)])
    e = np.exp(raw - np.repeat(np.maximum.reduceat(raw, starts), reps))
    prob = e / np.repeat(np.add.reduceat(e, starts), reps)
    o = Outcomes(correct, valid, gt, pred, prob, item, is_gt)
    idx = np.arange(n)
    groups = [("all", np.zeros(n, dtype=np.int64), 1), ("modality", idx % 8, 8),
              ("question type", idx % 5, 5), ("dataset", idx % 40, 40)]
    return o, groups


def bench_metrics(n: int, repeat: int) -> None:
    from scipy.stats import bootstrap

    o, groups = synth_outcomes(n)
    n_groups = sum(k for _, _, k in groups)
    print(f"\n== evaluation metrics: {n:,} predictions, {n_groups} groups (all, 8 modalities, "
          "5 question types, 40 datasets)")

    def every(fn: Callable[..., Any]) -> Callable[[], list[Any]]:
        return lambda: [fn(g, k, o) for _, g, k in groups]

    for name, hand, lib in (("macro-F1 + balanced accuracy", hand_class_metrics, _class_metrics),
                            ("AUROC (option level, pooled)", hand_auroc, _auroc)):
        t_hand, r_hand = best_time(every(hand), repeat)
        t_lib, r_lib = best_time(every(lib), repeat)
        diff = max(float(np.nanmax(np.abs(np.asarray(a) - np.asarray(b))))
                   for ra, rb in zip(r_hand, r_lib) for a, b in zip(np.atleast_2d(ra), np.atleast_2d(rb)))
        row(name, t_hand, t_lib, "library", f"max |diff| {diff:.1e}")

    b = 1000

    def binomial() -> np.ndarray:
        out = []
        for _, g, k in groups:
            cnt = np.bincount(g, minlength=k)
            acc = np.bincount(g, weights=o.correct, minlength=k) / cnt
            out.append(_bootstrap_ci(cnt, acc, b, np.random.default_rng(0)))
        return np.concatenate(out)

    def scipy_percentile() -> np.ndarray:
        out = []
        rng = np.random.default_rng(0)
        for _, g, k in groups:
            for j in range(k):
                x = o.correct[g == j].astype(float)
                res = bootstrap((x,), np.mean, n_resamples=b, method="percentile", vectorized=True,
                                batch=50, rng=rng)
                out.append((res.confidence_interval.low, res.confidence_interval.high))
        return np.asarray(out)

    t_hand, ci_hand = best_time(binomial, repeat)
    t_lib, ci_lib = best_time(scipy_percentile, 1)
    half = float(np.max(ci_hand[:, 1] - ci_hand[:, 0])) / 2
    row(f"bootstrap CI (B={b}, percentile)", t_hand, t_lib, "hand",
        f"max |diff| {np.max(np.abs(ci_hand - ci_lib)):.1e} (Monte Carlo; widest half-width {half:.3f})")
    try:
        bootstrap((np.array([1.0]),), np.mean, n_resamples=10, method="percentile", rng=0)
        print("  scipy.stats.bootstrap accepts a group of one item")
    except ValueError as exc:
        print(f"  scipy.stats.bootstrap on a group of one item: ValueError ({exc})")


# ------------------------------------------------------------------------------ Spearman
def hand_rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks 1..n (medgr2 before issue 21)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def hand_spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(np.corrcoef(hand_rankdata(a), hand_rankdata(b))[0, 1])


def bench_spearman(repeat: int) -> None:
    rng = np.random.default_rng(1)
    print("\n== R_phi calibration: Spearman of scores against targets (ties: scores rounded to 0.1)")
    for n in (1_000, 20_000):
        t = rng.choice([10.0, 6.0, 2.0, -2.0, -6.0], n)
        s = np.round(t + rng.normal(0, 2.0, n), 1)
        t_hand, r_hand = best_time(lambda s=s, t=t: hand_spearman(s, t), repeat)
        t_lib, r_lib = best_time(lambda s=s, t=t: spearman(s, t), repeat)
        row(f"Spearman, n={n:,}", t_hand, t_lib, "library", f"|diff| {abs(r_hand - r_lib):.1e}")


# ------------------------------------------------------------------------------ MinHash / LSH
def synth_texts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts of ``bench_filters_dedup`` (templated questions + answer, five per image), 5 % planted
    one-word edits of an earlier text on the same image; and one 64-bit image hash per text
    (a planted copy's hash is its original's with up to 3 bits flipped); the original of each planted text."""
    from bench_filters_dedup import ANSWERS, TEMPLATES, VOCAB
    from medgr2_filters.keys import normalise

    pyr, rng = random.Random(seed), np.random.default_rng(seed)
    n_planted = n // 20
    n_base = n - n_planted
    image = rng.integers(0, 2**63, (n_base + 4) // 5, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    texts, hashes, origins = [], [], []
    for i in range(n_base):
        q = pyr.choice(TEMPLATES).format(**{k: pyr.choice(v) for k, v in VOCAB.items()})
        texts.append(normalise(q) + " " + normalise(pyr.choice(ANSWERS)))
        hashes.append(int(image[i // 5]))
    for _ in range(n_planted):
        i = pyr.randrange(n_base)
        origins.append(i)
        texts.append(texts[i].replace("this", "the", 1))
        flips = sum(1 << b for b in pyr.sample(range(64), pyr.randint(0, 3)))
        hashes.append(hashes[i] ^ flips)
    return texts, np.asarray(hashes, dtype=np.uint64), np.asarray(origins, dtype=np.int64)


def bench_minhash(n: int, repeat: int) -> None:
    import zlib

    from datasketch import MinHash
    from medgr2_filters.keys import shingles

    num_perm, shingle = 128, 3
    texts, _, origins = synth_texts(n)
    n_planted = len(origins)
    sets = [shingles(t, shingle) for t in texts]
    print(f"\n== MinHash signatures: {n:,} templated texts ({n_planted:,} planted one-word edits), "
          f"{num_perm} permutations")

    def sig(**kw: Any) -> Callable[[], np.ndarray]:
        return lambda: np.stack([m.hashvalues for m in MinHash.bulk(sets, num_perm=num_perm, seed=1, **kw)])

    t_crc, s_crc = best_time(sig(hashfunc=zlib.crc32), repeat)
    t_sha, s_sha = best_time(sig(), repeat)
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, n, 20_000), rng.integers(0, n, 20_000)
    a, b = np.r_[a, np.arange(n - n_planted, n)], np.r_[b, origins]  # planted pairs: high similarity
    as_sets = [set(x) for x in sets]
    exact = np.array([len(as_sets[i] & as_sets[j]) / len(as_sets[i] | as_sets[j]) for i, j in zip(a, b)])
    err_crc = np.abs((s_crc[a] == s_crc[b]).mean(axis=1) - exact)
    err_sha = np.abs((s_sha[a] == s_sha[b]).mean(axis=1) - exact)
    row("CRC-32 vs default SHA-1 hashfunc", t_crc, t_sha, "hand",
        f"Jaccard estimate mean |err| {err_crc.mean():.4f} vs {err_sha.mean():.4f}, "
        f"max {err_crc.max():.3f} vs {err_sha.max():.3f}")


def bench_lsh(n: int, repeat: int) -> None:
    import zlib

    from datasketch import MinHash, MinHashLSH
    from medgr2_filters.dedup import LSH_WEIGHTS, _band_hashes, candidate_pairs, lsh_bands, text_signatures
    from medgr2_filters.keys import shingles

    num_perm, shingle, threshold, max_d = 128, 3, 0.7, 5
    texts, img, origins = synth_texts(n, seed=1)
    sets = [shingles(t, shingle) for t in texts]
    print(f"\n== near-duplicate pairs (text Jaccard >= {threshold} and image hashes within {max_d} bits): "
          f"{n:,} texts, {len(origins):,} planted")
    bands, rows = lsh_bands(threshold, num_perm)
    sig64 = text_signatures(texts, num_perm, shingle)

    def hand_candidates() -> set[tuple[int, int]]:
        cand = candidate_pairs(_band_hashes(sig64, bands, rows), img, max_d)
        ok = (sig64[cand[:, 0]] == sig64[cand[:, 1]]).mean(axis=1) >= threshold
        return set(map(tuple, cand[ok].tolist()))

    mhs = MinHash.bulk(sets, num_perm=num_perm, seed=1, hashfunc=zlib.crc32)  # the same signatures

    def lib_candidates() -> set[tuple[int, int]]:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
        with lsh.insertion_session() as session:
            for i, m in enumerate(mhs):
                session.insert(i, m, check_duplication=False)
        imgs, close, checked = img.tolist(), [], 0
        for i, m in enumerate(mhs):
            for j in lsh.query(m):
                if j > i:
                    checked += 1
                    if (imgs[i] ^ imgs[j]).bit_count() <= max_d:
                        close.append((i, j))
        lib_candidates.checked = checked  # type: ignore[attr-defined]
        cand = np.asarray(close, dtype=np.int64).reshape(-1, 2)
        ok = (sig64[cand[:, 0]] == sig64[cand[:, 1]]).mean(axis=1) >= threshold
        return set(map(tuple, cand[ok].tolist()))

    t_hand, p_hand = best_time(hand_candidates, repeat)
    t_lib, p_lib = best_time(lib_candidates, 1)
    planted = {(int(o), n - len(origins) + k) for k, o in enumerate(origins)}
    row("banded index vs MinHashLSH", t_hand, t_lib, "hand",
        f"pairs {len(p_hand):,} vs {len(p_lib):,} (symmetric difference {len(p_hand ^ p_lib)}), "
        f"planted found {len(planted & p_hand)} vs {len(planted & p_lib)}; "
        f"MinHashLSH text candidates checked {lib_candidates.checked:,}")  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ image hashes
def bench_imagehash(repeat: int) -> None:
    try:
        import imagehash
    except ImportError:
        print("\n== image hashes: skipped (pip install imagehash, or the dev extra)")
        return
    from medgr2_filters.imagehash import ahash, dhash
    from PIL import Image

    rng = np.random.default_rng(3)

    def texture(size: int) -> np.ndarray:
        coarse = rng.random((12, 12)).astype(np.float32) * 255
        return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC))

    def as_int(h: Any) -> int:
        return int(str(h), 16)

    lib = {"dhash": lambda im: as_int(imagehash.dhash(im)),
           "ahash": lambda im: as_int(imagehash.average_hash(im))}
    hand = {"dhash": dhash, "ahash": ahash}
    print("\n== perceptual image hashes: medgr2_filters.imagehash vs the imagehash package")
    for size, count in ((64, 500), (1024, 40)):
        base = [texture(size) for _ in range(count)]
        orig = [Image.fromarray(np.clip(t, 0, 255).astype(np.uint8)) for t in base]
        noisy = [Image.fromarray(np.clip(t + rng.normal(0, 2.0, t.shape), 0, 255).astype(np.uint8))
                 for t in base]
        for name in ("dhash", "ahash"):
            t_hand, h_hand = best_time(lambda f=hand[name], ims=orig: [f(im) for im in ims], repeat)
            t_lib, h_lib = best_time(lambda f=lib[name], ims=orig: [f(im) for im in ims], repeat)
            n_hand = [hand[name](im) for im in noisy]
            n_lib = [lib[name](im) for im in noisy]
            within_hand = sum((x ^ y).bit_count() <= 5 for x, y in zip(h_hand, n_hand))
            within_lib = sum((x ^ y).bit_count() <= 5 for x, y in zip(h_lib, n_lib))
            same = max((x ^ y).bit_count() for x, y in zip(h_hand, h_lib))
            row(f"{name}, {count} images {size}x{size}", t_hand, t_lib, "hand",
                f"noised copy within 5 bits {within_hand}/{count} vs {within_lib}/{count}; "
                f"max bits hand != lib {same}")
    deep = [Image.fromarray((np.clip(texture(256), 0, 255) * 8 + 500).astype(np.uint16)) for _ in range(30)]
    n_pairs = len(deep) * (len(deep) - 1) // 2
    for name in ("dhash", "ahash"):
        counts = []
        for f in (hand[name], lib[name]):
            h = [f(im) for im in deep]
            counts.append(sum((h[i] ^ h[j]).bit_count() <= 5 for i in range(len(h)) for j in range(i)))
        print(f"  {name}: {len(deep)} unrelated 12-bit CT-like images ({deep[0].mode}, "
              f"stored values 500-2540): pairs within 5 bits (false matches) {counts[0]}/{n_pairs} here, {counts[1]}/{n_pairs} with "
              "imagehash (it converts to 8-bit 'L' first, which clips every value above 255)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="predictions for the metrics")
    parser.add_argument("--texts", type=int, default=20_000, help="texts for the MinHash signatures")
    parser.add_argument("--lsh-texts", type=int, default=10_000, help="texts for the near-duplicate pairs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=["metrics", "spearman", "minhash", "lsh", "imagehash"])
    args = parser.parse_args(argv)
    print(f"{'function':<34} {'hand s':>9} {'library s':>9}  {'faster':>7} {'ratio':<7} {'used':>7}  results")
    if "metrics" in args.only:
        bench_metrics(args.n, args.repeat)
    if "spearman" in args.only:
        bench_spearman(args.repeat)
    if "minhash" in args.only:
        bench_minhash(args.texts, args.repeat)
    if "lsh" in args.only:
        bench_lsh(args.lsh_texts, args.repeat)
    if "imagehash" in args.only:
        bench_imagehash(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
