"""Registers the built-in filters (lazy targets: importing this module imports no numpy or datasketch)."""

from __future__ import annotations

from medgr2 import hookimpl

_OPTS = "medgr2_filters.options"


@hookimpl
def medgr2_register_filters(registry):
    """Add threshold, top_k, rand_k, dedup, overlap and contamination."""
    registry.add("threshold", "medgr2_filters.selection:ThresholdFilter", config=f"{_OPTS}:ThresholdOptions",
                 description="Keep samples whose reward r > tau.")
    registry.add("top_k", "medgr2_filters.selection:TopKFilter", config=f"{_OPTS}:TopKOptions",
                 description="Keep the k (or a fraction) highest-reward samples; ties by input order.")
    registry.add("rand_k", "medgr2_filters.selection:RandKFilter", config=f"{_OPTS}:RandKOptions",
                 description="Keep k samples at random, seeded (RandK); match_tau: as many as threshold.")
    registry.add("dedup", "medgr2_filters.dedup:DedupFilter", config=f"{_OPTS}:DedupOptions",
                 description="Drop exact and near duplicates (MinHash text + perceptual image hash).")
    registry.add("overlap", "medgr2_filters.overlap:OverlapFilter", config=f"{_OPTS}:OverlapOptions",
                 description="Drop samples already in D_gen unless allow_overlap.")
    registry.add("contamination", "medgr2_filters.contamination:ContaminationFilter",
                 config=f"{_OPTS}:ContaminationOptions",
                 description="Drop samples sharing n-grams or images with an evaluation set.")
