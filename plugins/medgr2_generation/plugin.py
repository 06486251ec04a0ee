"""Registers the generation backends and prompt strategies (lazy targets: nothing heavy imported)."""

from __future__ import annotations

from medgr2 import hookimpl

_OPTS = "medgr2_generation.options"


@hookimpl
def medgr2_register_generator_updaters(registry):
    """``exemplar-bank``: Algorithm 1's generator update for the API generators (a versioned exemplar bank)."""
    registry.add("exemplar-bank", "medgr2_generation.exemplars:ExemplarBankUpdater",
                 config="medgr2_generation.options:ExemplarUpdaterOptions",
                 description="Top-reward kept samples per modality × question type as few-shot exemplars, versioned")


@hookimpl
def medgr2_register_generators(registry):
    """``gemini`` (google-genai), ``openai`` (OpenAI-compatible servers), ``local`` (transformers)."""
    registry.add(
        "gemini",
        "medgr2_generation.gemini_backend:GeminiGenerator",
        config=f"{_OPTS}:GeminiOptions",
        description="Gemini API via google-genai (key: GEMINI_API_KEY / GOOGLE_API_KEY)",
    )
    registry.add(
        "openai",
        "medgr2_generation.openai_backend:OpenAIGenerator",
        config=f"{_OPTS}:OpenAIOptions",
        description="Any OpenAI-compatible server: OpenAI, vLLM, Ollama, LM Studio",
    )
    registry.add(
        "local",
        "medgr2_generation.local:LocalGenerator",
        config=f"{_OPTS}:LocalOptions",
        description="A local transformers VLM folder, batched generate",
    )


@hookimpl
def medgr2_register_prompts(registry):
    """The paper's three prompt strategies, as versioned template files."""
    for name, what in (
        ("direct", "ask for a sample straight away"),
        ("step_by_step", "describe, pick a fact, write, check"),
        ("meta_cognitive", "reflect on supported question types and answer form, then write"),
    ):
        registry.add(name, f"medgr2_generation.prompts:{name}", description=what)
