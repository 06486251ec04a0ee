"""Processor classes that work without torchvision, registered with ``AutoProcessor``.

``Qwen2_5_VLProcessor`` insists on a video processor, and the video processor needs
torchvision. :class:`Qwen2_5_VLImageProcessor` is the same processor without video support;
it works for tiny and real Qwen2.5-VL checkpoints alike. Importing this module registers it with
``AutoProcessor`` (under its class name, so real checkpoints keep their own processor): without
the registration ``AutoProcessor.from_pretrained`` silently returns only the tokenizer and images
are dropped without an error.
"""

from __future__ import annotations

from transformers import AutoProcessor, PretrainedConfig
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor


class Qwen2_5_VLImageProcessor(Qwen2_5_VLProcessor):
    """A Qwen2.5-VL processor for images only (no video processor, hence no torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        kwargs.pop("video_processor", None)
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class _ImageOnlyProcessorKey(PretrainedConfig):
    """A private config type used only as the registration key of the processors above."""

    model_type = "medgr2_image_only_processor"


def register() -> None:
    """Register the processors with ``AutoProcessor`` (idempotent)."""
    AutoProcessor.register(_ImageOnlyProcessorKey, Qwen2_5_VLImageProcessor, exist_ok=True)


register()
