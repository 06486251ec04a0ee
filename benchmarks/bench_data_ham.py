"""Benchmark: index HAM10000 (8,494 images, each decoded once) and build 50,000 questions from it.

Run: ``.venv/bin/python benchmarks/bench_data_ham.py [--shared ../shared/data] [--questions 50000]``.
Prints index time (cold and warm hash/decode caches; side by side, the header-only check that
admits truncated files), question-building time and rate, and the cost of decoding one image.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("MEDGR2_SHARED_DATA", "../shared/data"))
    parser.add_argument("--questions", type=int, default=50_000)
    parser.add_argument("--decode-sample", type=int, default=300)
    args = parser.parse_args()

    from medgr2.images import open_image
    from medgr2.interfaces import StageContext
    from medgr2.plugins import load_registry
    from medgr2_datasets.presets import preset_spec

    registry = load_registry()
    spec = preset_spec("ham10000", args.shared)
    if not Path(spec["options"]["root"]).is_dir():
        raise SystemExit(f"HAM10000 not found under {args.shared} (pass --shared or set MEDGR2_SHARED_DATA)")

    t0 = time.perf_counter()
    seed = registry.create("dataset", "csv", spec["options"]).load()
    index_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    seed = registry.create("dataset", "csv", spec["options"]).load()
    index_warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    registry.create("dataset", "csv", {**spec["options"], "verify": "none"}).load()
    index_noverify = time.perf_counter() - t0
    from medgr2_datasets import source_support
    import medgr2_datasets.probe as probe

    source_support._HASH_CACHE.clear()
    probe.clear_cache()
    t0 = time.perf_counter()
    registry.create("dataset", "csv", {**spec["options"], "verify": "header"}).load()
    index_header = time.perf_counter() - t0
    source_support._HASH_CACHE.clear()
    probe.clear_cache()
    t0 = time.perf_counter()
    registry.create("dataset", "csv", spec["options"]).load()
    index_decode = time.perf_counter() - t0  # same OS page cache state as the header run
    n_items = len(seed.items)

    per_item = -(-args.questions // n_items)
    gen = registry.create("generator", "labels", {"per_item": per_item, "label_noise": 0.1})
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        result = gen.generate(seed.items, StageContext(work_dir=Path(work), seed=0))
        build = time.perf_counter() - t0
    samples = result.samples[: args.questions]

    sample = seed.items[: args.decode_sample]
    t0 = time.perf_counter()
    for it in sample:
        open_image(it.image, registry)
    decode_each = (time.perf_counter() - t0) / max(len(sample), 1)

    print(f"HAM10000 items indexed           : {n_items:,} ({len(seed.rejects)} rejects)")
    print(f"index, cold caches (decode all)  : {index_cold:.2f} s  ({n_items / index_cold:,.0f} images/s)")
    print(f"index, cold, verify=header       : {index_header:.2f} s  (admits truncated files)")
    print(f"index, cold, verify=decode again : {index_decode:.2f} s  ({index_decode / index_header:.2f}x "
          f"header-only, +{(index_decode - index_header) / n_items * 1000:.2f} ms per image)")
    print(f"index, warm hash + decode caches : {index_warm:.2f} s")
    print(f"index, warm, verify=none         : {index_noverify:.2f} s")
    print(
        f"questions built                  : {len(samples):,} of {len(result.samples):,} "
        f"(per_item={per_item}, {len(result.rejects)} items without a question)"
    )
    print(
        f"question building                : {build:.2f} s  ({len(result.samples) / build:,.0f} questions/s)"
    )
    print(f"index + 50k questions            : {index_cold + build:.2f} s")
    print(f"decode one image (open_image)    : {decode_each * 1000:.2f} ms")


if __name__ == "__main__":
    main()
