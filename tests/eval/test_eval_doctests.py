"""The examples in the evaluation modules' docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["medgr2_eval.scorers", "medgr2_eval.parsing", "medgr2_eval.evaluator"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
