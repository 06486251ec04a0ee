"""Options of the generation backends (light: pydantic only, imported when configs are checked).

API keys are never options: the backends read them from the environment (``GEMINI_API_KEY`` /
``GOOGLE_API_KEY``; the variable named by ``api_key_env`` for OpenAI-compatible servers) with
:func:`medgr2.config.env_secret`, and they are never written anywhere.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gemini-2.0-flash": {"input": 0.10, "output": 0.40},
    "gemini-2.0-flash-lite": {"input": 0.075, "output": 0.30},
    "gemini-2.5-flash": {"input": 0.30, "output": 2.50},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.00},
}
"""USD per million input/output tokens (list prices; override with the ``prices`` option)."""


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptOptions(_Options):
    """How prompts are made and replies checked (shared by every backend)."""

    strategy: str = Field(
        default="meta_cognitive",
        description="Registered prompt strategy: direct, step_by_step, meta_cognitive ...",
    )
    template_path: str | None = Field(
        default=None, description="A template file that overrides the strategy's template."
    )
    temperature: float = Field(default=0.7, ge=0, le=2, description="Sampling temperature.")
    max_output_tokens: int = Field(default=1024, ge=16, description="Cap on tokens per reply.")
    reask: bool = Field(default=True, description="Re-ask an invalid reply once with the validation error.")
    retry_rejects: bool = Field(
        default=False,
        description="Ask again for items whose cached reply was rejected for its content (content rejects "
        "are otherwise final; transport failures are always asked again). CLI: --retry-rejects.",
    )
    max_image_side: int = Field(
        default=1024, ge=16, description="Images are downscaled to this longest side."
    )
    max_image_pixels: int = Field(
        default=1024 * 1024, ge=256, description="... and to at most this many pixels."
    )
    max_image_bytes: int = Field(
        default=4_000_000, ge=1024, description="... and re-encoded under this size."
    )
    image_format: Literal["jpeg", "png"] = Field(default="jpeg", description="Encoding of inline images.")


class ApiOptions(PromptOptions):
    """Options shared by the API backends (request engine, guard, cache, prices)."""

    model: str = Field(default="gpt-4o-mini", description="Model name sent to the server.")
    base_url: str | None = Field(default=None, description="Server URL (None: the provider's default).")
    concurrency: int = Field(default=16, ge=1, le=4096, description="Requests in flight at most.")
    abort_after_invalid: int = Field(
        default=3,
        ge=1,
        description="Stop generation when this many requests in a row are refused as invalid (HTTP 400).",
    )
    rpm: float | None = Field(
        default=None, gt=0, description="Requests per minute at most (None: unlimited)."
    )
    tpm: float | None = Field(default=None, gt=0, description="Tokens per minute at most (None: unlimited).")
    timeout_s: float = Field(default=120.0, gt=0, description="Timeout of one HTTP attempt, in seconds.")
    max_retries: int = Field(default=6, ge=0, le=100, description="Retries per request before giving up.")
    backoff_base_s: float = Field(default=1.0, ge=0, description="First retry delay (doubles, with jitter).")
    backoff_max_s: float = Field(default=60.0, ge=0, description="Cap on one retry delay.")
    min_start_gap_s: float = Field(
        default=0.0002,
        ge=0,
        le=60,
        description="Least time between two request starts (0: none): avoids a thundering herd of "
        "connects at start and replies coming back in synchronized bursts.",
    )
    structured_output: bool = Field(default=True, description="Ask for JSON-schema output where supported.")
    allow_restricted: bool = Field(
        default=False,
        description="Send images of restricted sources to this external backend (items whose labels have "
        "restricted=true or whose dataset is in restricted_datasets).",
    )
    restricted_datasets: list[str] = Field(
        default_factory=list, description="Datasets whose images never leave the machine."
    )
    cache_path: str | None = Field(
        default=None, description="Reply cache (JSONL); None: requests.jsonl in the stage folder."
    )
    prices: dict[str, dict[str, float]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per million tokens by model: {model: {input: x, output: y}}.",
    )
    exemplar_bank: str | None = Field(
        default=None,
        description="An exemplar bank folder (its newest version) or one version folder (…/v002): the "
        "meta_cognitive prompt shows the top-reward exemplars of the item's modality as text-only examples "
        "(the self-updating generator; see medgr2_generation.exemplars). None: no exemplars.",
    )
    exemplars_per_prompt: int = Field(
        default=3, ge=1, le=8, description="Exemplars shown per prompt at most (with exemplar_bank)."
    )


class GeminiOptions(ApiOptions):
    """Options of the ``gemini`` backend (google-genai; key from GEMINI_API_KEY / GOOGLE_API_KEY)."""

    model: str = Field(default="gemini-2.0-flash", description="Gemini model name.")
    api_version: str = Field(default="v1beta", description="API version path segment.")


class OpenAIOptions(ApiOptions):
    """Options of the ``openai`` backend (any OpenAI-compatible server: OpenAI, vLLM, Ollama ...)."""

    api_key_env: str = Field(
        default="OPENAI_API_KEY",
        description="Environment variable holding the key (optional for local servers).",
    )
    transport: Literal["auto", "lean", "sdk"] = Field(
        default="auto",
        description="How requests are sent: lean (medgr2's own HTTP/1.1 client, a fraction of the SDK's CPU per "
        "request), sdk (the openai SDK + httpx), auto (lean unless a proxy variable applies to base_url).",
    )


class LocalOptions(PromptOptions):
    """Options of the ``local`` backend (a transformers VLM folder, batched generate)."""

    model_path: str = Field(description="A transformers vision-language model: a local folder with config.json, "
                                        "or a Hub id present in the local Hugging Face cache (never downloaded).")
    batch_size: int = Field(default=8, ge=1, description="Prompts per generate call.")
    temperature: float = Field(default=0.0, ge=0, le=2, description="0: greedy decoding.")
    max_output_tokens: int = Field(default=256, ge=16, description="New tokens per reply.")
    max_image_side: int = Field(default=448, ge=16, description="Images are downscaled to this longest side.")
    device: str = Field(default="cpu", description="torch device.")
    cache_path: str | None = Field(
        default=None, description="Reply cache (JSONL); None: requests.jsonl in the stage folder."
    )


class ExemplarUpdaterOptions(_Options):
    """Options of the ``exemplar-bank`` generator updater (Algorithm 1, line 14, for API generators)."""

    bank_dir: str | None = Field(
        default=None,
        description="The bank folder, kept across cycles (None: the stage's work_dir, which the loop must "
        "then keep the same every cycle).",
    )
    per_cell: int = Field(default=3, ge=1, le=100, description="Exemplars kept per modality × question type.")
    exemplars_per_prompt: int = Field(
        default=3, ge=1, le=8, description="Passed on to the generator: exemplars shown per prompt at most."
    )
