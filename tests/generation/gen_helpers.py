"""Helpers of the generation tests (importable by tests and by subprocess scripts)."""

from __future__ import annotations

from pathlib import Path


def make_items(
    root: Path, n: int, *, dataset: str = "demo", start: int = 0, labels: dict | None = None
) -> list:
    """``n`` seed items whose images are small PNGs written under ``root``."""
    from PIL import Image

    from medgr2.data import ImageRef, Modality, SeedItem

    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(start, start + n):
        name = f"img{i}.png"
        if not (root / name).exists():
            Image.new("RGB", (96, 64), ((i * 37) % 256, 80, 160)).save(root / name)
        items.append(
            SeedItem(
                id=f"{dataset}-{i}",
                dataset=dataset,
                modality=Modality.XRAY,
                split="train",
                image=ImageRef(path=name, root=str(root), sha256=f"sha-{dataset}-{i}"),
                labels=dict(labels or {"diagnosis": ["pneumonia", "normal", "effusion"][i % 3]}),
            )
        )
    return items
