"""Subprocess body of the kill -9 test: generate with the openai backend against a fake server.

Usage: python gen_kill_worker.py BASE_URL WORK_DIR IMAGE_DIR N CONCURRENCY
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from gen_helpers import make_items  # noqa: E402


def main() -> None:
    base_url, work_dir, image_dir, n, concurrency = sys.argv[1:6]
    warnings.simplefilter("ignore")
    from medgr2.interfaces import StageContext
    from medgr2.plugins import load_registry
    from medgr2.stages.generate import generate

    registry = load_registry()
    items = [
        i.model_copy(update={"labels": {"diagnosis": f"finding {i.id}"}})
        for i in make_items(Path(image_dir), int(n))
    ]
    gen = registry.create(
        "generator",
        "openai",
        {"base_url": base_url, "concurrency": int(concurrency), "model": "fake-model", "strategy": "direct"},
    )
    generate(gen, items, StageContext(work_dir=Path(work_dir), registry=registry, seed=1))


if __name__ == "__main__":
    main()
