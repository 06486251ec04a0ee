"""The grpo trainer: composite reward with per-term logs and reward-hacking monitors; reward terms."""

from __future__ import annotations

import json

import pytest
from medgr2_trl.grpo import GRPOPolicyTrainer, RewardMonitor, build_terms, grpo_rows
from medgr2_trl.options import GRPOOptions, RewardTermSpec


def test_grpo_runs_with_the_composite_reward_and_logs_each_term(tiny_qwen, samples, train_context, tmp_path):
    opts = GRPOOptions(max_steps=2, per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
                       num_threads=1, reward=[RewardTermSpec(term="reward_model", weight=0.8),
                                              RewardTermSpec(term="answer_match", weight=0.2),
                                              RewardTermSpec(term="format", weight=0.1)])
    out = tmp_path / "grpo"
    result = GRPOPolicyTrainer(opts).train(samples, tiny_qwen, out, train_context)
    assert result.metrics["global_step"] == 2
    assert train_context.reward_model.calls >= 2
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logs if "reward" in r]
    assert len(steps) == 2
    for record in steps:
        for term in ("reward_model", "answer_match", "format"):
            assert f"rewards/{term}/mean" in record
        assert 0.0 <= record["monitor/frac_tied_groups"] <= 1.0
        assert 0.0 <= record["monitor/match_rate"] <= 1.0
        expected = sum(w * record[f"rewards/{t}/mean"]
                       for t, w in (("reward_model", 0.8), ("answer_match", 0.2), ("format", 0.1)))
        assert record["reward"] == pytest.approx(expected, abs=1e-5)
    assert (out / "final" / "model.safetensors").is_file()


def test_grpo_with_kl_on_llava(tiny_llava, samples, train_context, tmp_path):
    opts = GRPOOptions(max_steps=1, per_device_train_batch_size=4, num_generations=4, max_completion_length=6,
                       beta=0.04, num_threads=1, reward=[RewardTermSpec(term="answer_match")])
    result = GRPOPolicyTrainer(opts).train(samples[:4], tiny_llava, tmp_path / "g", train_context)
    assert any("kl" in h for h in result.history)


def test_monitor_ties_and_correlation():
    monitor = RewardMonitor(["reward_model", "answer_match"], [0.8, 0.2], num_generations=2)
    batch = {"reward_model": [0.5, 0.5, 0.9, 0.1], "answer_match": [1.0, 1.0, 1.0, 0.0]}
    columns = {"answer": ["a"] * 4, "options": [["a", "b"]] * 4}
    got = monitor.monitors(batch, ["x"] * 4, columns)
    assert got["monitor/frac_tied_groups"] == 0.5  # the first group ties, the second does not
    assert got["monitor/rphi_match_corr"] == pytest.approx(0.8165, abs=1e-3)  # 0.4 / sqrt(0.32 * 0.75)
    assert got["monitor/match_rate"] == 0.75
    # within groups: only the second has a right and a wrong completion, and R_phi prefers the right one
    assert got["monitor/frac_mixed_groups"] == 0.5 and got["monitor/rphi_group_auroc"] == 1.0
    # a batch-wide correlation can be positive while R_phi prefers the wrong answer of the same question:
    # the right answers sit in the question R_phi scores higher as a whole
    levels = {"reward_model": [0.8, 0.85, 0.9, 0.1, 0.2, 0.15], "answer_match": [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]}
    got = RewardMonitor(["reward_model", "answer_match"], [0.8, 0.2], num_generations=3).monitors(
        levels, ["x"] * 6, {"answer": ["a"] * 6, "options": [["a", "b"]] * 6})
    assert got["monitor/rphi_match_corr"] > 0.6 and got["monitor/rphi_group_auroc"] == 0.0
    assert got["monitor/frac_mixed_groups"] == 0.5
    logged = {}
    monitor.record("reward_model", batch["reward_model"], ["x"] * 4, {**columns, "log_metric": logged.__setitem__})
    assert not logged  # waits for every term
    monitor.record("answer_match", batch["answer_match"], ["x"] * 4, {**columns, "log_metric": logged.__setitem__})
    assert logged["monitor/frac_tied_groups"] == 0.5


def test_terms_come_from_the_registry_with_options(train_context):
    terms, weights = build_terms([RewardTermSpec(term="reward_model", weight=0.8, options={"paper_exact": True}),
                                  RewardTermSpec(term="answer_match", weight=0.2)], train_context, 2)
    assert [t.__name__ for t in terms] == ["reward_model", "answer_match"] and weights == [0.8, 0.2]
    cols = {"question": ["q"] * 2, "image_ref": [None] * 2, "answer": ["normal"] * 2,
            "options": [["normal", "pneumonia"]] * 2}
    assert terms[0](completions=["B", "normal (A)"], **cols) == [-5.5, -1.0]  # raw r: paper_exact
    assert terms[1](completions=["B", "normal (A)"], **cols) == [0.0, 1.0]


def test_bad_reward_setups_are_clear(train_context, tiny_qwen, samples, tmp_path):
    train_context.reward_model = None
    with pytest.raises(ValueError, match="needs the reward model"):
        build_terms([RewardTermSpec(term="reward_model")], train_context, 2)
    with pytest.raises(ValueError, match="listed twice"):
        build_terms([RewardTermSpec(term="answer_match")] * 2, train_context, 2)
    from medgr2.registry import UnknownComponentError

    with pytest.raises(UnknownComponentError, match="answer_match"):
        build_terms([RewardTermSpec(term="answer_matc")], train_context, 2)
    bad = GRPOOptions(per_device_train_batch_size=3, num_generations=4, reward=[RewardTermSpec(term="answer_match")])
    with pytest.raises(ValueError, match="multiple of num_generations"):
        GRPOPolicyTrainer(bad).train(samples, tiny_qwen, tmp_path / "x", train_context)


def test_grpo_rows_give_the_terms_their_columns(samples, train_context):
    row = grpo_rows(samples[:1], "think", train_context)[0]
    assert row["answer"] in row["options"] and "<think>" in row["prompt"][0]["content"]
    assert json.loads(row["image_ref"])["path"] == samples[0].images[0].path


def test_grpo_with_lora_and_the_think_format(tiny_qwen, samples, train_context, tmp_path):
    from medgr2_trl.options import LoraOptions

    opts = GRPOOptions(max_steps=1, per_device_train_batch_size=4, num_generations=4, max_completion_length=6,
                       num_threads=1, answer_format="think", lora=LoraOptions(r=4, alpha=8),
                       reward=[RewardTermSpec(term="format", weight=0.5), RewardTermSpec(term="answer_match")])
    result = GRPOPolicyTrainer(opts).train(samples[:4], tiny_qwen, tmp_path / "lora", train_context)
    assert "rewards/format/mean" in next(h for h in result.history if "reward" in h)
    assert (tmp_path / "lora" / "final" / "model.safetensors").is_file()
    assert not (tmp_path / "lora" / "final" / "adapter_config.json").exists()


def test_grpo_says_whether_it_needs_the_reward_model():
    assert GRPOPolicyTrainer().needs_reward_model  # the default 0.8 R_φ + 0.2 match
    assert not GRPOPolicyTrainer(GRPOOptions(reward=[RewardTermSpec(term="answer_match"),
                                                     RewardTermSpec(term="format")])).needs_reward_model
