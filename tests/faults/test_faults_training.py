"""Fault suite, issue 19 (training rows): a training stage does its work or stops and says why.

Before:
- GRPO on fewer samples than one batch (the default quickstart: 1 kept sample, batch 8) ran 0
  optimiser steps, saved the untrained model and was recorded as done.
- GRPO at the tiny-model default learning rate (2e-3, SFT's) turned a 56.5 % SFT policy into 0 %
  valid answers ("(kin (kin (kin…"), silently; ``config show --resolved`` printed
  ``learning_rate: null``.
- A resumed SFT appended the re-run steps to ``metrics.jsonl`` after the ones it had already logged.

Now: the GRPO batch shrinks to fit (with a warning in the result) or the trainer refuses with the fix;
0 optimiser steps is an error; GRPO has its own concrete learning rate and KL weight for tiny models;
a collapse guard stops GRPO when the valid-answer rate on a probe set collapses and keeps the best
weights; a resumed SFT's ``metrics.jsonl`` holds every step once; each GRPO step records the reward's
mean and std and the share of tied groups.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from medgr2.data import ImageRef, VQASample  # noqa: E402
from medgr2.testing import make_png_samples  # noqa: E402
from medgr2.interfaces import StageContext  # noqa: E402
from medgr2_trl.options import (  # noqa: E402
    CollapseGuardOptions,
    GRPOOptions,
    RewardTermSpec,
    SFTOptions,
    count_params,
)

MATCH = [RewardTermSpec(term="answer_match")]


class LengthRM:
    """A stand-in R_φ: longer answers score higher (so GRPO groups have reward variance)."""

    version = "length-rm"

    def score(self, inputs, context=None):
        return [min(10.0, -6.0 + len(x.answer) / 2.0) for x in inputs]


def _file_loader(ref):
    from PIL import Image

    return Image.open(Path(ref.root) / ref.path)


def make_samples(root: Path, n: int) -> list[VQASample]:
    """Two-class samples whose answer is the image colour (red: pneumonia)."""
    return make_png_samples(root, n)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from medgr2_hf.tiny import build_tiny_vlm

    return build_tiny_vlm("qwen2_5_vl", tmp_path_factory.mktemp("tiny") / "qwen", seed=0)


@pytest.fixture(scope="module")
def module_samples(tmp_path_factory) -> list[VQASample]:
    return make_samples(tmp_path_factory.mktemp("images"), 8)


def _context(work: Path, scorer: str | None = None) -> StageContext:
    from medgr2.plugins import load_registry

    registry = load_registry()
    if ("image_loader", "file") not in registry:
        registry.registrar("image_loader", "tests").add("file", _file_loader)
    return StageContext(work_dir=work, seed=0, registry=registry, reward_model=LengthRM(), scorer=scorer)


@pytest.fixture
def context(tmp_path) -> StageContext:
    return _context(tmp_path / "work")


@pytest.fixture
def run_context(tmp_path) -> StageContext:
    """As in ``medgr2 run``: the evaluation's scorer (``medgr2``) decides what a valid answer is."""
    return _context(tmp_path / "work", scorer="medgr2")


@pytest.fixture(scope="module")
def sft_policy(tiny, module_samples, tmp_path_factory) -> Path:
    """The tiny model after 30 SFT steps: it answers validly on part of the prompts."""
    from medgr2_trl.sft import SFTPolicyTrainer

    out = tmp_path_factory.mktemp("sft")
    opts = SFTOptions(max_steps=30, learning_rate=3e-3, warmup_ratio=0.0, save_steps=1000, num_threads=1)
    return Path(SFTPolicyTrainer(opts).train(module_samples, tiny, out, _context(out / "work")).checkpoint)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# ---------------------------------------------------------------- 0 optimiser steps


def test_grpo_on_one_sample_with_batch_8_shrinks_the_batch_and_takes_steps(tiny, tmp_path, context):
    from medgr2_trl.grpo import GRPOPolicyTrainer

    sample = make_samples(tmp_path / "img", 1)
    opts = GRPOOptions(max_steps=2, max_completion_length=4, num_threads=1, reward=MATCH, collapse_guard=None)
    assert opts.per_device_train_batch_size == 8 and opts.num_generations == 4  # the quickstart's defaults
    result = GRPOPolicyTrainer(opts).train(sample, tiny, tmp_path / "g", context)
    assert result.metrics["optimizer_steps"] == 2  # was 0
    assert result.metrics["per_device_train_batch_size"] == 4 and result.metrics["prompts_per_step"] == 1
    assert len(result.warnings) == 1
    assert "1 sample(s) cannot fill one generation batch of 2 prompts × 4 generations" in result.warnings[0]
    assert "lowered from 8 to 4" in result.warnings[0]
    assert [r["step"] for r in _records(tmp_path / "g" / "metrics.jsonl") if "loss" in r] == [1, 2]


def test_grpo_that_cannot_fit_one_sample_refuses_with_the_fix(tiny, tmp_path, context):
    from medgr2_trl.grpo import GRPOPolicyTrainer

    sample = make_samples(tmp_path / "img", 1)
    opts = GRPOOptions(max_steps=2, per_device_train_batch_size=4, gradient_accumulation_steps=8,
                       max_completion_length=4, num_threads=1, reward=MATCH, collapse_guard=None)
    with pytest.raises(ValueError, match=r"1 sample\(s\) cannot fill one generation batch of 8 prompts.*"
                                         r"Lower gradient_accumulation_steps"):
        GRPOPolicyTrainer(opts).train(sample, tiny, tmp_path / "g", context)
    assert not (tmp_path / "g" / "final").exists()
    fixed = opts.model_copy(update={"gradient_accumulation_steps": 1, "trl_args": {"generation_batch_size": 8}})
    with pytest.raises(ValueError, match=r"Remove \['generation_batch_size'\] from trl_args"):
        GRPOPolicyTrainer(fixed).train(sample, tiny, tmp_path / "g2", context)


def test_a_training_that_ends_with_0_steps_is_an_error_not_a_saved_model(tmp_path, context):
    from types import SimpleNamespace

    from medgr2_trl import training

    class NoStepTrainer:  # what TRL did with 1 sample and batch 8: returns at once, global_step 0
        state = SimpleNamespace(global_step=0)
        args = SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=1, max_steps=8)
        train_dataset = [{"prompt": "x"}]
        saved = False

        def remove_callback(self, cb):
            pass

        def train(self, resume_from_checkpoint=None):
            return SimpleNamespace(metrics={})

        def save_model(self, path):
            self.saved = True

    trainer = NoStepTrainer()
    with pytest.raises(training.ZeroStepsError, match=r"0 optimiser steps \(1 rows, per_device_train_batch_size 8"):
        training.run_training(trainer, SFTOptions(), tmp_path / "out", [], None, context, 0.0)
    assert not trainer.saved


def test_sft_with_drop_last_and_too_few_samples_refuses(tiny, tmp_path, context):
    from medgr2_trl.sft import SFTPolicyTrainer

    opts = SFTOptions(max_steps=2, num_threads=1, trl_args={"dataloader_drop_last": True})
    with pytest.raises(ValueError, match=r"sft: 3 sample\(s\) cannot fill one batch of 8"):
        SFTPolicyTrainer(opts).train(make_samples(tmp_path / "img", 3), tiny, tmp_path / "s", context)


# ---------------------------------------------------------------- defaults that are shown and safe


def _fake_large_model(folder: Path, rows: int, cols: int) -> Path:
    """A folder whose safetensors header declares one ``rows × cols`` float32 tensor (no data needed)."""
    folder.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, rows * cols * 4]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    (folder / "config.json").write_text("{}")
    return folder


def test_config_show_resolved_prints_the_learning_rates_and_kl_used(tmp_path, tiny):
    from medgr2.config import RunConfig, resolved_dict
    from medgr2.plugins import load_registry

    registry = load_registry()
    tiny_run = resolved_dict(RunConfig(), registry)["policy"]
    assert tiny_run["sft"]["options"]["learning_rate"] == 2e-3
    assert tiny_run["grpo"]["options"]["learning_rate"] == 1e-4  # was null (→ 2e-3 at run time)
    assert tiny_run["grpo"]["options"]["beta"] == 0.04  # KL on for tiny models
    assert tiny_run["grpo"]["options"]["collapse_guard"]["min_ratio"] == 0.5
    from transformers import AutoModelForImageTextToText

    loaded = AutoModelForImageTextToText.from_pretrained(tiny)
    assert count_params(tiny) == sum(p.numel() for p in loaded.parameters()) < 10_000_000  # from the header
    given_tiny = resolved_dict(RunConfig(policy={"model": str(tiny)}), registry)["policy"]
    assert given_tiny["grpo"]["options"]["learning_rate"] == 1e-4
    large = _fake_large_model(tmp_path / "large", 5000, 5000)
    assert count_params(large) == 25_000_000
    large_run = resolved_dict(RunConfig(policy={"model": str(large)}), registry)["policy"]
    assert large_run["sft"]["options"]["learning_rate"] == 1e-5
    assert large_run["grpo"]["options"]["learning_rate"] == 1e-6 and large_run["grpo"]["options"]["beta"] == 0.0
    explicit = RunConfig(policy={"grpo": {"name": "grpo", "options": {"learning_rate": 3e-5, "beta": 0.0}}})
    assert resolved_dict(explicit, registry)["policy"]["grpo"]["options"]["learning_rate"] == 3e-5


def test_grpo_uses_its_own_defaults_and_records_them(tiny, tmp_path, context, module_samples):
    from medgr2_trl.grpo import GRPOPolicyTrainer

    opts = GRPOOptions(max_steps=1, per_device_train_batch_size=4, max_completion_length=4, num_threads=1,
                       reward=MATCH, collapse_guard=None)
    result = GRPOPolicyTrainer(opts).train(module_samples[:4], tiny, tmp_path / "g", context)
    assert result.metrics["learning_rate"] == 1e-4 and result.metrics["beta"] == 0.04
    assert any("kl" in h for h in result.history)  # the reference model is there
    assert result.warnings == ()


# ---------------------------------------------------------------- the collapse guard


def test_collapse_guard_stops_a_destructive_grpo_and_keeps_the_pre_collapse_weights(
        sft_policy, module_samples, tmp_path, run_context):
    from medgr2_trl.grpo import GRPOPolicyTrainer

    out = tmp_path / "g"
    opts = GRPOOptions(max_steps=4, learning_rate=1.0, warmup_ratio=0.0, beta=0.0, max_completion_length=8,
                       num_threads=1, save_steps=1, reward=[RewardTermSpec(term="reward_model")],
                       collapse_guard=CollapseGuardOptions(every_steps=1, probe_size=8))
    result = GRPOPolicyTrainer(opts).train(module_samples, sft_policy, out, run_context)
    m = result.metrics
    assert m["guard_start_valid_rate"] == 1.0  # 8 of 8 probe answers name an option after SFT
    assert m["guard_collapse_step"] == 1 and m["guard_last_valid_rate"] == 0.0  # lr 1.0: 0 of 8 after one step
    assert m["optimizer_steps"] == 1 and m["guard_kept_step"] == 0  # stopped at once, the SFT weights kept
    assert result.version == "g@0"
    assert len(result.warnings) == 1 and result.warnings[0].startswith(
        "grpo: collapse guard fired at step 1: the valid-answer rate on 8 probe prompts fell to 0.000 "
        "(start 1.000, threshold 0.500)")
    kept, start, collapsed = _weights(Path(result.checkpoint)), _weights(sft_policy), _weights(out / "checkpoint-1")
    assert kept.keys() == start.keys()
    assert all(torch.equal(kept[k], start[k]) for k in kept)
    assert not all(torch.equal(collapsed[k], start[k]) for k in kept)  # the collapsed step did change them
    probes = [(r["step"], r["guard/valid_rate"]) for r in _records(out / "metrics.jsonl") if "guard/valid_rate" in r]
    assert probes == [(0, 1.0), (1, 0.0)]


def test_the_probe_counts_valid_answers_as_the_evaluation_does():
    from medgr2.plugins import load_registry
    from medgr2_trl.guard import answer_judge

    s = VQASample(images=(ImageRef(path="x.png", root=".", loader="file"),), question="q",
                  options=("eye", "skin", "chest", "dermoscopy"), answer="dermoscopy")
    by_scorer = answer_judge("text", "medgr2", load_registry())
    # the collapsed shared-data policy wrote "dersderderder (D)": invalid in the report, so for the guard too
    assert by_scorer("dersderderder (D)", s) == (False, False)
    assert by_scorer("chest (D)", s) == (True, False)  # an option's text (the letter is not what is scored)
    assert by_scorer("dermoscopy (D)", s) == (True, True)
    by_extract = answer_judge("text")  # outside a run (no evaluation.scorer): medgr2.answers.extract
    assert by_extract("dersderderder (D)", s) == (True, True) and by_extract("chest (D)", s) == (False, False)


def test_grpo_defaults_keep_the_sft_policy_valid(sft_policy, module_samples, tmp_path, run_context):
    from medgr2_trl.grpo import GRPOPolicyTrainer

    opts = GRPOOptions(max_steps=4, max_completion_length=8, num_threads=1,
                       reward=[RewardTermSpec(term="reward_model")],
                       collapse_guard=CollapseGuardOptions(every_steps=2, probe_size=8))
    result = GRPOPolicyTrainer(opts).train(module_samples, sft_policy, tmp_path / "g", run_context)
    assert result.warnings == () and "guard_collapse_step" not in result.metrics
    assert result.metrics["optimizer_steps"] == 4 and result.metrics["guard_kept_step"] == 4
    probes = [r["guard/valid_rate"] for r in result.history if "guard/valid_rate" in r]
    assert probes == [1.0, 1.0, 1.0]  # steps 0, 2, 4: lr 1e-4 with KL 0.04 leaves every answer valid


# ---------------------------------------------------------------- records


def test_resumed_sft_metrics_do_not_repeat_steps(tiny, module_samples, tmp_path, context):
    from medgr2_trl.sft import SFTPolicyTrainer

    out = tmp_path / "sft"
    opts = SFTOptions(max_steps=6, save_steps=3, learning_rate=3e-3, num_threads=1)
    SFTPolicyTrainer(opts).train(module_samples, tiny, out, context)
    # as after a kill between step 6 and the end: checkpoint-3 is the last complete one
    shutil.rmtree(out / "checkpoint-6")
    shutil.rmtree(out / "final")
    result = SFTPolicyTrainer(opts).train(module_samples, tiny, out, context)
    assert result.metrics["resumed_from_step"] == 3 and result.metrics["optimizer_steps"] == 6
    records = _records(out / "metrics.jsonl")
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]  # was 1..6 then 4..6 again
    assert sum("train_runtime" in r for r in records) == 1
    assert [r["step"] for r in result.history if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_each_grpo_step_records_reward_mean_std_and_tied_share(tiny, module_samples, tmp_path, context):
    from medgr2_trl.grpo import GRPOPolicyTrainer

    opts = GRPOOptions(max_steps=2, per_device_train_batch_size=8, max_completion_length=4, num_threads=1,
                       reward=MATCH, collapse_guard=None)
    out = tmp_path / "g"
    GRPOPolicyTrainer(opts).train(module_samples, tiny, out, context)
    steps = [r for r in _records(out / "metrics.jsonl") if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:  # the untrained model names no option: every reward 0, every group of 4 tied
        assert (r["reward"], r["reward_std"], r["monitor/frac_tied_groups"]) == (0.0, 0.0, 1.0)
        assert r["frac_reward_zero_std"] == r["monitor/frac_tied_groups"]


def test_resumed_grpo_keeps_one_record_per_step_and_its_starting_rate(sft_policy, module_samples, tmp_path, context):
    from medgr2_trl.grpo import GRPOPolicyTrainer

    out = tmp_path / "g"
    opts = GRPOOptions(max_steps=4, save_steps=2, max_completion_length=8, num_threads=1, reward=MATCH,
                       collapse_guard=CollapseGuardOptions(every_steps=2, probe_size=8))
    GRPOPolicyTrainer(opts).train(module_samples, sft_policy, out, context)
    shutil.rmtree(out / "checkpoint-4")
    shutil.rmtree(out / "final")
    result = GRPOPolicyTrainer(opts).train(module_samples, sft_policy, out, context)
    assert result.metrics["resumed_from_step"] == 2 and result.metrics["guard_start_valid_rate"] == 0.5
    records = _records(out / "metrics.jsonl")
    assert [r["step"] for r in records if "guard/valid_rate" in r] == [0, 2, 4]
    assert [r["step"] for r in records if "reward" in r] == [1, 2, 3, 4]
    assert json.loads((out / "collapse_guard.json").read_text())["start_valid_rate"] == 0.5
