"""An image-only Qwen2.5-VL processor that needs no torchvision, and the folder layout it saves.

This file imports nothing but transformers and the standard library on purpose: it is copied
into every policy folder medgr2 saves, so that stock transformers can load the folder without
medgr2 installed:

* with torchvision: ``AutoProcessor.from_pretrained(folder)`` builds the stock
  ``Qwen2_5_VLProcessor`` (``processor_config.json`` names it and holds its image *and* video
  processor settings);
* without torchvision: ``AutoProcessor.from_pretrained(folder, trust_remote_code=True)`` builds
  :class:`Qwen2_5_VLImageProcessor` from this file (``auto_map``); without the flag loading fails
  loudly ("Qwen2VLVideoProcessor requires the Torchvision library") instead of silently returning
  a bare tokenizer that drops every image.

``Qwen2_5_VLProcessor`` insists on a video processor, and the video processor needs torchvision:
:class:`Qwen2_5_VLImageProcessor` is the same processor without video support; it works for tiny
and real Qwen2.5-VL checkpoints alike.
"""

from __future__ import annotations

import json
import os
import shutil

from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

STOCK_PROCESSOR_CLASS = "Qwen2_5_VLProcessor"
"""The processor class a saved folder names: the one stock transformers builds with torchvision."""
REMOTE_CODE_FILE = "processing_medgr2.py"
"""This file's name inside a saved folder (the ``auto_map`` module)."""
AUTO_MAP = {"AutoProcessor": "processing_medgr2.Qwen2_5_VLImageProcessor"}
_VIDEO_KEYS = ("do_convert_rgb", "do_normalize", "do_rescale", "do_resize", "image_mean", "image_std",
               "merge_size", "patch_size", "resample", "rescale_factor", "size", "temporal_patch_size")


class Qwen2_5_VLImageProcessor(Qwen2_5_VLProcessor):
    """A Qwen2.5-VL processor for images only (no video processor, hence no torchvision).

    :meth:`save_pretrained` writes the standard layout described in the module docstring.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        kwargs.pop("video_processor", None)
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """Save, then make the folder load with stock ``AutoProcessor`` (see the module docstring)."""
        files = super().save_pretrained(save_directory, push_to_hub=False)
        standardize_processor_folder(save_directory)
        if push_to_hub:
            self.push_to_hub(kwargs.pop("repo_id", os.path.basename(os.path.normpath(str(save_directory)))),
                             **kwargs)
        return files


def _rewrite_json(path: str, update) -> None:
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    update(data)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def standardize_processor_folder(folder) -> None:
    """Rewrite a folder saved by :class:`Qwen2_5_VLImageProcessor` into the stock-loadable layout.

    ``processor_config.json`` names ``Qwen2_5_VLProcessor``, gains the video processor settings
    (the image processor's; used only where torchvision is installed) and an ``auto_map`` to this
    file, which is copied next to it; ``tokenizer_config.json`` names the same processor class.
    """
    folder = str(folder)

    def processor(data: dict) -> None:
        data["processor_class"] = STOCK_PROCESSOR_CLASS
        image = data.get("image_processor") or {}
        video = {k: image[k] for k in _VIDEO_KEYS if k in image}
        video["video_processor_type"] = "Qwen2VLVideoProcessor"
        data.setdefault("video_processor", video)
        data["auto_map"] = dict(AUTO_MAP)

    _rewrite_json(os.path.join(folder, "processor_config.json"), processor)
    _rewrite_json(os.path.join(folder, "tokenizer_config.json"),
                  lambda data: data.update(processor_class=STOCK_PROCESSOR_CLASS))
    target = os.path.join(folder, REMOTE_CODE_FILE)
    source = os.path.abspath(__file__)
    if os.path.abspath(target) != source:
        shutil.copyfile(source, target)
