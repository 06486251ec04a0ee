"""Options models of the evaluation components (light: pydantic only, no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class VLMEvalKitOptions(BaseModel):
    """Options of the ``vlmevalkit`` scorer: the optional LLM answer extractor."""

    model_config = ConfigDict(extra="forbid")

    judge_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible base URL of the extractor LLM (e.g. http://127.0.0.1:8000/v1); "
        "None: rule-based only, unmatched answers are invalid.",
    )
    judge_model: str = Field(default="gpt-4o-mini", description="Model name sent to the judge server.")
    judge_api_key_env: str = Field(
        default="OPENAI_API_KEY", description="Environment variable holding the judge's API key."
    )


class VQAEvaluatorOptions(BaseModel):
    """Options of the ``vqa`` evaluator (batched greedy generation over VQA samples)."""

    model_config = ConfigDict(extra="forbid")

    answer_format: Literal["letter", "text", "think"] | None = Field(
        default=None,
        description="How the policy is asked to answer; None: the run's policy.answer_format "
        "(context.answer_format), else 'text'.",
    )
    prompt: Literal["format", "medgr2", "med-r1"] = Field(
        default="format",
        description="'format': medgr2.answers.build_prompt in the answer format, answers read out of the format; "
        "'medgr2' / 'med-r1': that protocol's published prompt, outputs scored as they are.",
    )
    mode: Literal["generate", "likelihood"] = Field(
        default="generate",
        description="'generate': greedy generation, the answer read from the output; 'likelihood': no "
        "generation, the option whose answer has the highest log-likelihood is the answer (OmniMedVQA's "
        "likelihood protocol; every answer is a valid option).",
    )
    likelihood_norm: Literal["mean", "sum"] = Field(
        default="mean",
        description="How an option's token log-probabilities are combined in likelihood mode: 'mean' per "
        "token (the mean loss of SEED-Bench-style scoring; not biased to short options) or 'sum'.",
    )
    scorer: str | None = Field(
        default=None, description="Scorer used when the caller names none; None: medgr2."
    )
    device: str = Field(default="cpu", description="torch device of the policy (cpu, cuda, cuda:1 ...).")
    batch_size: int = Field(default=8, ge=1, description="Prompts per generate() call.")
    max_new_tokens: int = Field(default=32, ge=1, description="Greedy generation length cap.")
    option_scores: bool = Field(
        default=False,
        description="Also score each option's answer by its summed log-probability, so AUROC "
        "uses real scores.",
    )
    num_threads: int | None = Field(
        default=1, ge=1, description="torch threads (None: leave torch's default)."
    )
    bootstrap: int = Field(default=1000, ge=0, description="Bootstrap resamples for the 95% CIs (0: none).")
    seed: int = Field(default=0, description="Seed of the bootstrap.")
