"""Built-in sample filters of medgr2: threshold, top_k, rand_k, dedup, overlap, contamination.

Each is a :class:`medgr2.interfaces.Filter`, registered by :mod:`medgr2_filters.plugin`; the
filter stage (:mod:`medgr2.stages.filter`) runs them in order and records every decision.
"""
