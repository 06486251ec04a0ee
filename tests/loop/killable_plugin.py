"""A plugin of fake components that can be made to hang at one stage, to test kill -9 and resume.

Set ``MEDGR2_TEST_HANG=<stage>`` (generate, sft, grpo, reward) and ``MEDGR2_TEST_MARKER=<file>``:
that stage writes the marker, then sleeps until killed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from medgr2 import hookimpl
from medgr2.testing import (
    FakeDatasetOptions, FakeDatasetSource, FakeEvaluator, FakeEvaluatorOptions, FakeFilter, FakeFilterOptions,
    FakeGenerator, FakeGeneratorOptions, FakeRewardModel, FakeRewardOptions, FakeTrainer, FakeTrainerOptions,
)


def _maybe_hang(stage: str) -> None:
    if os.environ.get("MEDGR2_TEST_HANG") == stage:
        Path(os.environ["MEDGR2_TEST_MARKER"]).write_text(stage)
        time.sleep(600)


class HangGenerator(FakeGenerator):
    def generate(self, items, context):
        out = super().generate(items, context)
        _maybe_hang("generate")
        return out


class HangRewardModel(FakeRewardModel):
    def train(self, examples, context, eval_examples=()):
        if context.cycle > 0:
            _maybe_hang("reward")
        return super().train(examples, context, eval_examples)


class HangTrainer(FakeTrainer):
    def train(self, samples, model_path, output_dir, context):
        _maybe_hang(Path(context.work_dir).name)
        result = super().train(samples, model_path, output_dir, context)
        (Path(output_dir) / "config.json").write_text("{}")  # a model folder, as the next stage expects
        return result


@hookimpl
def medgr2_register_generators(registry):
    registry.add("hang", HangGenerator, config=FakeGeneratorOptions)


@hookimpl
def medgr2_register_reward_models(registry):
    registry.add("hang", HangRewardModel, config=FakeRewardOptions)


@hookimpl
def medgr2_register_trainers(registry):
    registry.add("hang", HangTrainer, config=FakeTrainerOptions)


@hookimpl
def medgr2_register_datasets(registry):
    registry.add("hang", FakeDatasetSource, config=FakeDatasetOptions)


@hookimpl
def medgr2_register_filters(registry):
    registry.add("hang", FakeFilter, config=FakeFilterOptions)


@hookimpl
def medgr2_register_evaluators(registry):
    registry.add("hang", FakeEvaluator, config=FakeEvaluatorOptions)
