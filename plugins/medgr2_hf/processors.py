"""Processor classes that work without torchvision, registered with ``AutoProcessor``.

``Qwen2_5_VLProcessor`` insists on a video processor, and the video processor needs
torchvision. :class:`Qwen2_5_VLImageProcessor` is the same processor without video support;
it works for tiny and real Qwen2.5-VL checkpoints alike. Importing this module registers it with
``AutoProcessor`` (under its class name, so real checkpoints keep their own processor): without
the registration ``AutoProcessor.from_pretrained`` silently returns only the tokenizer and images
are dropped without an error.

The class lives in :mod:`medgr2_hf.processing_medgr2`, a file that imports only transformers: it
is copied into every folder the processor saves, whose ``processor_config.json`` then names the
stock ``Qwen2_5_VLProcessor`` (loads where torchvision is installed) with an ``auto_map`` to the
copy (``trust_remote_code=True`` loads it without torchvision; without the flag loading fails
loudly instead of returning a bare tokenizer).
"""

from __future__ import annotations

from transformers import AutoProcessor, PretrainedConfig

from medgr2_hf.processing_medgr2 import Qwen2_5_VLImageProcessor, standardize_processor_folder

__all__ = ["Qwen2_5_VLImageProcessor", "register", "standardize_processor_folder"]


class _ImageOnlyProcessorKey(PretrainedConfig):
    """A private config type used only as the registration key of the processors above."""

    model_type = "medgr2_image_only_processor"


def register() -> None:
    """Register the processors with ``AutoProcessor`` (idempotent)."""
    AutoProcessor.register(_ImageOnlyProcessorKey, Qwen2_5_VLImageProcessor, exist_ok=True)


register()
