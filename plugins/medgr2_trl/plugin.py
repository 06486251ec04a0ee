"""medgr2_trl plugin: the ``sft`` and ``grpo`` trainers and the GRPO reward terms.

Light on purpose: targets and options are lazy strings; TRL and torch load when a trainer runs.
"""

from __future__ import annotations

from typing import Any

from medgr2 import hookimpl


@hookimpl
def medgr2_register_trainers(registry: Any) -> None:
    """``sft`` (TRL SFTTrainer) and ``grpo`` (TRL GRPOTrainer, weighted reward terms)."""
    registry.add("sft", "medgr2_trl.sft:SFTPolicyTrainer", config="medgr2_trl.options:SFTOptions",
                 description="Supervised fine-tuning on kept samples (TRL SFTTrainer)")
    registry.add("grpo", "medgr2_trl.grpo:GRPOPolicyTrainer", config="medgr2_trl.options:GRPOOptions",
                 description="GRPO with weighted reward terms, e.g. 0.8 R_phi + 0.2 match (TRL GRPOTrainer)")


@hookimpl
def medgr2_register_reward_terms(registry: Any) -> None:
    """``reward_model`` (R_φ), ``answer_match`` and ``format``."""
    registry.add("reward_model", "medgr2_trl.rewards:reward_model", config="medgr2_trl.options:RewardModelTermOptions",
                 description="R_phi(I, q, a') from the run's reward model, (r + 6) / 16 by default")
    registry.add("answer_match", "medgr2_trl.rewards:answer_match",
                 description="1 when the completion names the gold option (medgr2.answers.extract)")
    registry.add("format", "medgr2_trl.rewards:format_tags", config="medgr2_trl.options:FormatTermOptions",
                 description="<think>...</think><answer>...</answer> structure")
