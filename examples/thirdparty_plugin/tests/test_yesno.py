"""The plugin tests itself in isolation with medgr2.testing's fixtures (no conftest needed)."""

import medgr2_yesno.plugin

from medgr2.interfaces import Generator
from medgr2.testing import make_seed_item


def test_registered_and_generates(medgr2_make_registry, medgr2_context):
    registry = medgr2_make_registry(medgr2_yesno.plugin)
    gen = registry.create("generator", "yesno", {"negative_ratio": 0.5})
    assert isinstance(gen, Generator)
    items = [make_seed_item(i) for i in range(8)] + [make_seed_item(99, labels={})]
    result = gen.generate(items, medgr2_context)
    assert len(result.samples) == 8 and [r.reason for r in result.rejects] == ["missing_label"]
    assert {s.answer for s in result.samples} == {"yes", "no"}
    for s, item in zip(result.samples, items):
        asked_own_label = item.labels["diagnosis"] in s.question
        assert s.answer == ("yes" if asked_own_label else "no")


def test_all_positive(medgr2_make_registry, medgr2_context):
    gen = medgr2_make_registry(medgr2_yesno.plugin).create("generator", "yesno", {"negative_ratio": 0})
    result = gen.generate([make_seed_item(i) for i in range(4)], medgr2_context)
    assert [s.answer for s in result.samples] == ["yes"] * 4
