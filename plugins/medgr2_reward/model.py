"""The regression reward model R_φ: (image, question, answer[, rationale]) → a score in [−6, 10].

A backbone (:mod:`medgr2_reward.backbones`) pools each input into a vector; a small head maps it
(with the tiny CNN's image feature and its product with the text for the MiniLM backbone, the
domain-fluency features of :mod:`medgr2_reward.lexicon` when ``lexicon`` is on, and the
answer–rationale flags of :mod:`medgr2_reward.consistency` when ``consistency`` is on) to ``z``, and the score is
``2 + 8·tanh(z)``, always inside [−6, 10]. Training minimises the MSE to the graded targets
(the paper's Eq. 1).

Scoring sorts inputs by token length and pads each batch only to its longest item; the model is
in eval mode (no dropout), so a score does not depend on batch size or order.

Every :meth:`~RegressionRewardModel.train` call continues from the current weights (continual
adaptation) and keeps the result as a new version folder ``<work_dir>/versions/vNNN`` (safetensors
+ JSON, no pickle), whose name goes into every score's ``RewardBreakdown.model_version``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medgr2.data import GradedExample, ImageRef, RewardInput, TrainResult, stable_hash, utcnow
from medgr2.interfaces import StageContext
from medgr2.store import atomic_write_text
from medgr2_reward.backbones import (
    MiniLMBackbone,
    Prepared,
    TinyCNN,
    VLMBackbone,
    answer_text,
    default_minilm_path,
)
from medgr2_reward.consistency import FEATURES as CONSISTENCY
from medgr2_reward.consistency import consistency_features
from medgr2_reward.grounding import FEATURES as GROUNDING
from medgr2_reward.grounding import GroundingBank
from medgr2_reward.lexicon import FEATURES, Counts, DomainLexicon
from medgr2_reward.memo import ImageMemo
from medgr2_reward.options import SCORE_MAX, SCORE_MIN, MiniLMOptions, TrainOptions, VLMRewardOptions

CENTER, HALF_RANGE = (SCORE_MAX + SCORE_MIN) / 2, (SCORE_MAX - SCORE_MIN) / 2
CONFIG_FILE = "reward_model.json"
HEAD_FILE = "head.safetensors"
LEXICON_FILE = "lexicon.json"
FORMAT_VERSION = 1


def squash(z: torch.Tensor) -> torch.Tensor:
    """Map raw head outputs onto the paper's scale: ``2 + 8·tanh(z)`` ∈ [−6, 10]."""
    return CENTER + HALF_RANGE * torch.tanh(z)


def group_rank_loss(
    pred: torch.Tensor, target: torch.Tensor, groups: Sequence[str] | None = None
) -> torch.Tensor:
    """Bradley-Terry loss over the ordered pairs of a batch: inside each group, or all of them.

    The versions of one report (original, synonyms, deletions, another study's text) share their
    question and image: ordering them is the sharpest signal of what makes an answer better, and it
    is how reward models are usually trained. Pairs across reports (``groups=None``) train the
    order the calibration report measures. For every pair (i, j) with ``target[i] > target[j]``
    the loss is ``softplus(-(pred[i] - pred[j]) / 2)`` (scores are on the 16-point scale); the mean
    over pairs is returned (0 when the batch has none).
    """
    pairs = target[:, None] > target[None, :]
    if groups is not None:
        codes = {g: n for n, g in enumerate(dict.fromkeys(groups))}
        gid = torch.tensor([codes[g] for g in groups], device=pred.device)
        pairs = pairs & (gid[:, None] == gid[None, :])
    if not bool(pairs.any()):
        return pred.sum() * 0.0
    diff = pred[:, None] - pred[None, :]
    return torch.nn.functional.softplus(-diff[pairs] / 2.0).mean()


class RewardNet(nn.Module):
    """Backbone vector (+ optional image feature and image × text product, + optional fluency
    features) → layer norm + MLP head → squashed score.

    The product of a text and an image projection (``fusion_dim`` wide) lets the head ask whether
    *this* answer fits *this* image: concatenation alone gives it the two apart, and a small head
    learns their interaction slowly from a few hundred images."""

    def __init__(self, backbone_module: nn.Module, hidden: int, vision: TinyCNN | None, lexical: int = 0,
                 match_dim: int = 0, dropout: float = 0.1, fusion_dim: int = 0, consistency: int = 0,
                 grounding: int = 0):
        super().__init__()
        self.backbone = backbone_module
        self.vision = vision
        self.lexical = lexical
        self.consistency = consistency
        self.grounding = grounding
        # Exact-match flags enter the token states as a learned vector (zero at first: no effect).
        self.match = nn.Embedding(2, match_dim) if match_dim else None
        if self.match is not None:
            nn.init.zeros_(self.match.weight)
        self.fusion = None
        if vision is not None and fusion_dim:
            self.fusion = nn.ModuleDict({"text": nn.Linear(hidden, fusion_dim),
                                         "image": nn.Linear(vision.out_dim, fusion_dim)})
        width = (hidden + (vision.out_dim if vision is not None else 0) + lexical + (fusion_dim if self.fusion else 0)
                 + consistency + grounding)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Dropout(dropout), nn.Linear(width, 128), nn.GELU(),
                                  nn.Linear(128, 1))

    def head_state(self) -> dict[str, torch.Tensor]:
        """The weights outside the backbone (head and vision encoder)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}


class RegressionRewardModel:
    """Shared machinery of the regression reward models (batching, training, versions, I/O).

    Subclasses set :attr:`kind` and build their backbone in :meth:`_build_backbone`.
    """

    kind = "regression"

    def __init__(self, options: TrainOptions):
        self.options = options
        self.version = ""
        self.parent_version: str | None = None
        self._backbone: Any = None
        self._net: RewardNet | None = None
        # the CNN's input per image (64 x 64 float32, 16 KiB: 128 MiB when full; it held every image, 1.6 GB at 200k)
        self._image_cache: ImageMemo[torch.Tensor] = ImageMemo(self._cnn_input)
        self.match_layer = 0  # the encoder layer whose input gets the exact-match vector
        self.lexicon = DomainLexicon(options.lexicon_min_target) if options.lexicon else None
        self.grounding = self._new_grounding()
        if options.checkpoint:
            self.load(Path(options.checkpoint).expanduser())

    # ------------------------------------------------------------------ building

    def _build_backbone(self, folder: Path | None) -> Any:
        raise NotImplementedError

    def _uses_cnn(self) -> bool:
        return False

    def _new_grounding(self) -> GroundingBank | None:
        if not getattr(self.options, "grounding", False):
            return None
        return GroundingBank(k=self.options.grounding_k, min_target=self.options.lexicon_min_target)

    def _device(self) -> torch.device:
        return torch.device(self.options.device)

    def _train_autocast(self) -> AbstractContextManager[Any]:
        """The arithmetic of training passes: bfloat16 autocast with ``precision: bf16``, else
        float32 (scoring always runs in float32, so scores stay exact and batch invariant)."""
        return torch.autocast(self._device().type, dtype=torch.bfloat16,
                              enabled=self.options.precision == "bf16")

    def _ensure_built(self) -> RewardNet:
        if self._net is None:
            if self.options.threads:
                torch.set_num_threads(self.options.threads)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.options.seed)
                self._backbone = self._build_backbone(None)
                self._net = self._make_net()
                layers = len(getattr(getattr(self._backbone.module, "encoder", None), "layer", ()))
                self.match_layer = min(getattr(self.options, "freeze_layers", 0), layers)
            self.version = self.version or f"{self.kind}-untrained"
        return self._net

    def _make_net(self) -> RewardNet:
        opts = self.options
        vision = TinyCNN(getattr(opts, "vision_dim", 32), getattr(opts, "vision_grid", 1)) if self._uses_cnn() else None
        lexical = len(FEATURES) if self.options.lexicon else 0
        match_dim = self._backbone.token_size if getattr(opts, "match_features", False) else 0
        net = RewardNet(self._backbone.module, self._backbone.hidden_size, vision, lexical, match_dim,
                        fusion_dim=getattr(opts, "fusion_dim", 0),
                        consistency=len(CONSISTENCY) if getattr(opts, "consistency", False) else 0,
                        grounding=len(GROUNDING) if self.grounding is not None else 0)
        return net.to(self._device())

    # ------------------------------------------------------------------ scoring

    def _cnn_input(self, image: ImageRef) -> torch.Tensor:
        """One image as the CNN reads it: grey, ``image_size`` square, normalised (memoised per image)."""
        import numpy as np

        from medgr2.images import open_image

        size = getattr(self.options, "image_size", 64)
        arr = torch.from_numpy(np.asarray(open_image(image).convert("L").resize((size, size)), dtype="float32") / 255.0)
        return ((arr - 0.5) / 0.25).unsqueeze(0)

    def _pixels(self, items: Sequence[Prepared]) -> tuple[torch.Tensor, torch.Tensor]:
        size = getattr(self.options, "image_size", 64)
        out, flags = [], []
        for it in items:
            if it.image is None:
                out.append(torch.zeros(1, size, size))
                flags.append(0.0)
                continue
            out.append(self._image_cache(it.image))
            flags.append(1.0)
        dev = self._device()
        return torch.stack(out).to(dev), torch.tensor(flags, device=dev)

    def _head(self, pooled: torch.Tensor, items: Sequence[Prepared]) -> torch.Tensor:
        """The score from pooled vectors, with the image and fluency features of ``items``; always in
        float32 (also under a training autocast), so a score keeps its full resolution."""
        net = self._net
        assert net is not None
        with torch.autocast(pooled.device.type, enabled=False):
            parts = [pooled.float()]
            if net.vision is not None:
                image = net.vision(*self._pixels(items))
                parts.append(image)
                if net.fusion is not None:
                    parts.append(net.fusion["text"](parts[0]) * net.fusion["image"](image))
            if net.lexical:
                parts.append(torch.tensor([it.lexical for it in items], dtype=torch.float32, device=pooled.device))
            if net.consistency:
                parts.append(torch.tensor([it.consistency for it in items], dtype=torch.float32,
                                          device=pooled.device))
            if net.grounding:
                parts.append(torch.tensor([it.grounding for it in items], dtype=torch.float32,
                                          device=pooled.device))
            return squash(net.head(torch.cat(parts, dim=-1)).squeeze(-1))

    def _forward(self, items: Sequence[Prepared]) -> torch.Tensor:
        return self._head(self._encode(items), items)

    def _encode(self, items: Sequence[Prepared]) -> torch.Tensor:
        """The backbone's pooled vectors of ``items`` (with the exact-match vector when on): what
        :meth:`_head` turns into scores."""
        batch = self._backbone.collate(items, self._device())
        if self._net is None or self._net.match is None:
            return self._backbone.forward(batch)
        k = self.match_layer
        hidden = self._with_match(self._backbone.bottom(batch, k), items)
        return self._backbone.top(hidden, batch["attention_mask"], k)

    def _with_match(self, hidden: torch.Tensor, items: Sequence[Prepared]) -> torch.Tensor:
        """Token states [B, T, H] plus the exact-match vector where a token's flag is 1."""
        net = self._net
        if net is None or net.match is None:
            return hidden
        flags = torch.zeros(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        for row, it in enumerate(items):
            if it.match:
                flags[row, : len(it.match)] = torch.tensor(it.match[: hidden.shape[1]], device=hidden.device)
        return hidden + net.match(flags)

    def _prepare(self, inputs: Sequence[RewardInput], leave_out: Sequence[Counts | None] | None = None,
                 groups: Sequence[str | None] | None = None) -> list[Prepared]:
        """Backbone features, plus the fluency, consistency and grounding features that are on
        (``leave_out`` and ``groups``: what each training example's own features may not use)."""
        prepared = self._backbone.prepare(inputs)
        if self.lexicon is not None:
            for n, (item, inp) in enumerate(zip(prepared, inputs, strict=True)):
                item.lexical = self.lexicon.features(answer_text(inp), leave_out[n] if leave_out else None)
        if getattr(self.options, "consistency", False):
            for item, inp in zip(prepared, inputs, strict=True):
                item.consistency = consistency_features(inp)
        if self.grounding is not None:
            for item, feats in zip(prepared, self.grounding.features(inputs, groups), strict=True):
                item.grounding = feats
        return prepared

    def _fit_lexicon(self, examples: Sequence[GradedExample]) -> list[Counts | None]:
        """Add the good answers of ``examples`` to the lexicon; the counts to leave out of each
        example's features: what the lexicon would lack had the example's group been held out, i.e.
        the good answers of its group, and its own text when counted, unless another group wrote the
        same text (a template repeated across images stays counted: the lexicon counts each distinct
        text once, so leaving it out would make every copy look unseen while training, and a head
        trained on that scores the same text, met fluent when scoring, at random)."""
        assert self.lexicon is not None
        lex = self.lexicon
        good = [e for e in examples if e.target >= lex.min_target]
        lex.fit(answer_text(e) for e in good)
        by_group: dict[str, set[str]] = {}
        writers: dict[str, set[str]] = {}
        for e in good:
            group, text = e.group_id or e.id, answer_text(e)
            by_group.setdefault(group, set()).add(text)
            writers.setdefault(text, set()).add(group)
        leave_out: list[Counts | None] = []
        for e in examples:
            text, group = answer_text(e), e.group_id or e.id
            texts = by_group.get(group, set())
            if lex.counted(text):
                texts = texts | {text}
            texts = {t for t in texts if writers.get(t, {group}) <= {group}}
            counts = Counts()
            for t in texts:
                counts.add(t)
            leave_out.append(counts if texts else None)
        lex.standardise([lex.raw_features(answer_text(e), lo) for e, lo in zip(examples, leave_out)])
        return leave_out

    def _cached_layers(self) -> int:
        """How many frozen bottom layers are computed once per training call (0: none). With
        exact-match flags, the cache ends where the flags go in (:attr:`match_layer`)."""
        k = getattr(self.options, "freeze_layers", 0)
        if not (k > 0 and getattr(self.options, "cache_frozen", False) and hasattr(self._backbone, "bottom")):
            return 0
        if self._net is not None and self._net.match is not None:
            return self.match_layer if k >= self.match_layer else 0
        return k

    def _frozen_cache(self, prepared: list[Prepared], layers: int, context: StageContext) -> list[torch.Tensor]:
        """Token states after the frozen layers, per example (unpadded), computed once."""
        out: list[torch.Tensor] = [torch.empty(0)] * len(prepared)
        order = sorted(range(len(prepared)), key=lambda i: (prepared[i].length, i))
        bs = self.options.score_batch_size
        assert context.reporter is not None and self._net is not None
        self._net.eval()
        with torch.no_grad(), self._train_autocast(), \
                context.reporter.task("rm-frozen-layers", total=len(order)) as task:
            for start in range(0, len(order), bs):
                idx = order[start:start + bs]
                batch = self._backbone.collate([prepared[i] for i in idx], self._device())
                hidden = self._backbone.bottom(batch, layers).float()
                for row, i in enumerate(idx):
                    out[i] = hidden[row, : prepared[i].length].clone()
                task.advance(len(idx))
        return out

    def _forward_cached(self, cache: list[torch.Tensor], items: Sequence[Prepared], idx: Sequence[int],
                        layers: int) -> torch.Tensor:
        states = [cache[i] for i in idx]
        width = max(s.shape[0] for s in states)
        hidden = states[0].new_zeros(len(states), width, states[0].shape[-1])
        mask = torch.zeros(len(states), width, dtype=torch.long, device=hidden.device)
        for row, st in enumerate(states):
            hidden[row, : st.shape[0]] = st
            mask[row, : st.shape[0]] = 1
        return self._head(self._backbone.top(self._with_match(hidden, items), mask, layers), items)

    text_only_encoder = False
    """Whether the backbone's vector depends on the tokenised text alone (the image, if any, enters in
    the head): then :meth:`score` encodes each distinct text once."""

    def score(self, inputs: Sequence[RewardInput], context: StageContext | None = None) -> list[float]:
        """Scores in [−6, 10], independent of batch size and order (length-sorted batches).

        With a text-only encoder (:attr:`text_only_encoder`), inputs whose tokenised text is the
        same (templated candidates repeat theirs: a third of 200,000 label-built ones are distinct,
        docs/performance.md) are encoded once and each gets its own head (image and fluency
        features)."""
        net = self._ensure_built()
        if not inputs:
            return []
        net.eval()
        prepared = self._prepare(inputs)
        order = sorted(range(len(prepared)), key=lambda i: (self._batch_kind(prepared[i]), prepared[i].length, i))
        out = [0.0] * len(prepared)
        bs = self.options.score_batch_size
        reporter = context.reporter if context is not None else None
        with torch.inference_mode():
            if reporter is not None and len(order) > bs:
                with reporter.task("score", total=len(order)) as task:
                    self._score_batches(prepared, order, bs, out, task)
            else:
                self._score_batches(prepared, order, bs, out, None)
        return out

    @staticmethod
    def _text_key(item: Prepared) -> tuple[Any, ...]:
        """What a text-only encoder reads of an input: its token features and exact-match flags."""
        return (*(tuple(v) for _, v in sorted(item.features.items())), tuple(item.match or ()))

    def _batch_kind(self, item: Prepared) -> int:
        """Scoring batches are sorted by this, then by length (0 for every input here; the VLM R_φ
        puts inputs without an image before those with one, so its batches rarely need splitting)."""
        return 0

    def _score_batches(self, prepared: list[Prepared], order: list[int], bs: int, out: list[float],
                       task: Any) -> None:
        if not self.text_only_encoder:
            for start in range(0, len(order), bs):
                idx = order[start:start + bs]
                self._put(out, idx, self._forward([prepared[i] for i in idx]), task)
            return
        copies: dict[tuple[Any, ...], list[int]] = {}  # distinct text -> its inputs, in `order`
        for i in order:
            copies.setdefault(self._text_key(prepared[i]), []).append(i)
        firsts = list(copies.values())  # ordered by each text's first input: still length-sorted
        for start in range(0, len(firsts), bs):
            groups = firsts[start:start + bs]
            pooled = self._encode([prepared[g[0]] for g in groups])
            rows = [row for row, g in enumerate(groups) for _ in g]
            idx = [i for g in groups for i in g]
            for lo in range(0, len(idx), bs):  # the head in batches of at most bs as well
                part = idx[lo:lo + bs]
                self._put(out, part, self._head(pooled[rows[lo:lo + bs]], [prepared[i] for i in part]), task)

    @staticmethod
    def _put(out: list[float], idx: Sequence[int], scores: torch.Tensor, task: Any) -> None:
        for i, s in zip(idx, scores.float().cpu().tolist(), strict=True):
            out[i] = min(SCORE_MAX, max(SCORE_MIN, float(s)))
        if task is not None:
            task.advance(len(idx))

    # ------------------------------------------------------------------ training

    def _batches(self, prepared: list[Prepared], groups: Sequence[str], rng: random.Random,
                 steps: int) -> list[list[int]]:
        """Shuffled batches made of whole groups (every grade of one report trains side by side, so
        the loss contrasts the versions of one text), groups of similar length batched together."""
        bs = self.options.batch_size
        members: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        units = list(members.values())
        batches: list[list[int]] = []
        while len(batches) < steps:
            rng.shuffle(units)
            epoch: list[list[int]] = []
            chunk = max(1, len(units) // max(1, len(prepared) // (bs * 50)))
            for c in range(0, len(units), chunk):
                part = sorted(units[c:c + chunk], key=lambda u: max(prepared[i].length for i in u))
                current: list[int] = []
                for unit in part:
                    if current and len(current) + len(unit) > bs:
                        epoch.append(current)
                        current = []
                    current += unit
                if current:
                    epoch.append(current)
            rng.shuffle(epoch)
            batches += epoch
        return batches[:steps]

    def train(self, examples: Sequence[GradedExample], context: StageContext,
              eval_examples: Sequence[GradedExample] = ()) -> TrainResult:
        """Fit with MSE from the current weights; save a new version under ``context.work_dir``.

        With ``eval_examples``, the version folder also gets ``calibration.json`` and
        ``calibration.png`` and the result's metrics carry the held-out figures.
        """
        if not examples:
            raise ValueError("no training examples: build a grade set first (medgr2 train-rm reads reward.references)")
        opts = self.options
        net = self._ensure_built()
        started = time.perf_counter()
        rng = random.Random(opts.seed + 7919 * (self._version_number(context.work_dir)))
        examples = list(examples)
        if opts.max_train_examples and len(examples) > opts.max_train_examples:
            examples = rng.sample(examples, opts.max_train_examples)
        leave_out = self._fit_lexicon(examples) if self.lexicon is not None else None
        own_groups = None
        if self.grounding is not None:
            self.grounding.fit(examples)
            own_groups = [e.group_id or (e.image.key if e.image is not None else None) for e in examples]
        prepared = self._prepare(examples, leave_out, own_groups)
        layers = self._cached_layers()
        cache = self._frozen_cache(prepared, layers, context) if layers else None
        targets = torch.tensor([e.target for e in examples], dtype=torch.float32)
        per_epoch = math.ceil(len(examples) / opts.batch_size)
        steps = opts.max_steps or max(1, round(opts.epochs * per_epoch))
        group_ids = [e.group_id or e.id for e in examples]
        batches = self._batches(prepared, group_ids, rng, steps)
        head_params = [p for n, p in net.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
        body_params = [p for n, p in net.named_parameters() if n.startswith("backbone.") and p.requires_grad]
        groups = [{"params": head_params, "lr": opts.head_lr}]
        if body_params:
            groups.append({"params": body_params, "lr": opts.lr})
        optim = torch.optim.AdamW(groups, weight_decay=opts.weight_decay)
        warm = max(1, int(opts.warmup_ratio * steps))
        sched = torch.optim.lr_scheduler.LambdaLR(
            optim, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
        history: list[dict[str, Any]] = []
        net.train()
        torch.manual_seed(opts.seed + len(examples))
        running, seen, done = 0.0, 0, 0
        assert context.reporter is not None
        with context.reporter.task("train-rm", total=steps) as task:
            for step, idx in enumerate(batches, 1):
                if context.stop.is_set():
                    break
                items = [prepared[i] for i in idx]
                with self._train_autocast():
                    pred = self._forward_cached(cache, items, idx, layers) if cache else self._forward(items)
                tgt = targets[idx].to(pred.device)
                loss = torch.nn.functional.mse_loss(pred, tgt)
                if opts.rank_weight > 0:
                    reports = [group_ids[i] for i in idx] if opts.rank_pairs == "report" else None
                    loss = loss + opts.rank_weight * group_rank_loss(pred, tgt, reports)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optim.step()
                sched.step()
                done = step
                running += loss.item() * len(idx)
                seen += len(idx)
                if step % 10 == 0 or step == len(batches):
                    history.append({"step": step, "mse": running / seen})
                    task.update(mse=f"{running / seen:.3f}")
                    running, seen = 0.0, 0
                task.advance(1)
        net.eval()
        folder = self._new_version_folder(context.work_dir)
        self.parent_version = self.version if not self.version.endswith("-untrained") else None
        data_hash = stable_hash(self.parent_version, opts.seed, [e.id for e in examples], length=8)
        self.version = f"{self.kind}-{folder.name}-{data_hash}"
        metrics: dict[str, float] = {"train_examples": float(len(examples)), "steps": float(done)}
        if history:
            metrics["train_mse_last"] = float(history[-1]["mse"])
        self.save(folder)
        if eval_examples:
            from medgr2_reward.calibration import write_calibration

            scores = self.score(eval_examples, context)
            cal = write_calibration(folder, scores, [e.target for e in eval_examples],
                                    [e.grade for e in eval_examples], version=self.version)
            metrics.update({f"heldout_{k}": float(cal[k]) for k in ("spearman", "mse", "pairwise_accuracy")})
            metrics["heldout_means_ordered"] = float(cal["means_ordered"])
        from medgr2.hub import write_reward_card  # the folder's model card (README.md)

        write_reward_card(folder, examples=len(examples))
        wall = time.perf_counter() - started
        atomic_write_text(context.work_dir / "latest.json",
                          json.dumps({"version": self.version, "path": str(folder)}, indent=2) + "\n")
        return TrainResult(checkpoint=str(folder), version=self.version, metrics=metrics,
                           history=tuple(history), wall_s=wall)

    def _version_number(self, work_dir: Path) -> int:
        """The next version number: above every folder in ``work_dir/versions`` and above the
        version this model continues from (a retrain in a new folder still counts up)."""
        root = Path(work_dir) / "versions"
        nums = [int(p.name[1:]) for p in root.glob("v[0-9][0-9][0-9]*") if p.name[1:].isdigit()] \
            if root.is_dir() else []
        parent = re.match(rf"{re.escape(self.kind)}-v(\d+)-", self.version or "")
        if parent:
            nums.append(int(parent.group(1)))
        return max(nums, default=0) + 1

    def _new_version_folder(self, work_dir: Path) -> Path:
        folder = Path(work_dir) / "versions" / f"v{self._version_number(work_dir):03d}"
        folder.mkdir(parents=True, exist_ok=False)
        return folder

    # ------------------------------------------------------------------ persistence

    def _saves_backbone(self) -> bool:
        return True

    def save(self, path: Path) -> None:
        """Write safetensors + ``reward_model.json`` into the folder ``path`` (no pickle)."""
        from safetensors.torch import save_file

        net = self._ensure_built()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self._saves_backbone():
            self._backbone.save(path / "backbone")
        head = {k: v.detach().cpu().contiguous() for k, v in net.head_state().items()}
        save_file(head, str(path / HEAD_FILE))
        if self.lexicon is not None:
            self.lexicon.save(path / LEXICON_FILE)
        if self.grounding is not None:
            self.grounding.save(path)
        digest = hashlib.sha256((path / HEAD_FILE).read_bytes()).hexdigest()[:12]
        config = {
            "format": FORMAT_VERSION, "kind": self.kind, "version": self.version or f"{self.kind}-{digest}",
            "parent_version": self.parent_version, "head_sha256": digest, "match_layer": self.match_layer,
            "backbone": "backbone" if self._saves_backbone() else str(getattr(self.options, "model_path", "")),
            "options": json.loads(self.options.model_dump_json(exclude={"checkpoint"})),
            "saved_at": utcnow().isoformat(),
        }
        atomic_write_text(path / CONFIG_FILE, json.dumps(config, indent=2) + "\n")

    def load(self, path: Path) -> None:
        """Load a folder written by :meth:`save` (same kind) into this instance."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg_file = path / CONFIG_FILE
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{path} is not a saved reward model (no {CONFIG_FILE}); give the folder "
                                    "that `medgr2 train-rm` wrote (…/versions/vNNN)")
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
        if config.get("kind") != self.kind:
            raise ValueError(f"{path} holds a {config.get('kind')!r} reward model, not {self.kind!r}: "
                             f"use reward_model name {config.get('kind')!r}")
        # Models saved before the lexicon, exact-match and image × text features had none of them.
        older = {k: v for k, v in (("lexicon", False), ("match_features", False), ("fusion_dim", 0),
                                   ("consistency", False), ("vision_grid", 1), ("grounding", False))
                 if k in type(self.options).model_fields}
        saved = type(self.options).model_validate({**older, **config["options"], "checkpoint": None})
        keep = {"score_batch_size", "batch_size", "threads", "device", "lr", "head_lr", "epochs", "max_steps",
                "warmup_ratio", "max_train_examples", "weight_decay", "freeze_layers", "cache_frozen",
                "precision"}
        self.options = saved.model_copy(update={k: getattr(self.options, k) for k in keep
                                                if k in type(self.options).model_fields})
        backbone_dir = path / config["backbone"] if config["backbone"] == "backbone" else Path(config["backbone"])
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        self._backbone = self._build_backbone(backbone_dir)
        self.lexicon = DomainLexicon.load(path / LEXICON_FILE) if self.options.lexicon else None
        self.grounding = GroundingBank.load(path) if getattr(self.options, "grounding", False) else None
        self.match_layer = int(config.get("match_layer", 0))
        self._net = self._make_net()
        missing, unexpected = self._net.load_state_dict(load_file(str(path / HEAD_FILE)), strict=False)
        bad = [k for k in missing if not k.startswith("backbone.")] + list(unexpected)
        if bad:
            raise ValueError(f"{path / HEAD_FILE} does not match this model: {bad[:5]}")
        self._net.eval()
        self._image_cache.clear()
        self.version = config["version"]
        self.parent_version = config.get("parent_version")


class MiniLMRewardModel(RegressionRewardModel):
    """R_φ on the pretrained MiniLM text encoder, fused with a tiny CNN over the image (CPU default)."""

    kind = "minilm"
    options: MiniLMOptions
    text_only_encoder = True  # the tiny CNN's image feature joins in the head

    def __init__(self, options: MiniLMOptions | None = None):
        super().__init__(options or MiniLMOptions())

    def _uses_cnn(self) -> bool:
        return self.options.vision

    def _build_backbone(self, folder: Path | None) -> MiniLMBackbone:
        path = folder or (Path(self.options.model_path).expanduser() if self.options.model_path
                          else default_minilm_path())
        backbone = MiniLMBackbone(path, self.options.max_length, self.options.pooling)
        if self.options.dropout is not None:
            backbone.set_dropout(self.options.dropout)
        backbone.freeze_bottom(self.options.freeze_layers)
        backbone.module.to(self._device())
        return backbone


class VLMRewardModel(RegressionRewardModel):
    """R_φ on a local Qwen2.5-VL / LLaVA folder: last-token hidden state + an MLP head.

    Inputs without an image (report grades, text-only replay) are rendered without an image part
    and run through the VLM as text only; a batch that holds both kinds runs as two sub-batches
    (one with images, one without) whose scores are put back in order. An input's score therefore
    never depends on what else is in its batch, and an image input is scored exactly as it would be
    in a batch of image inputs only (docs/reward-model.md, "The VLM R_φ and text-only inputs").
    """

    kind = "vlm"
    options: VLMRewardOptions

    def __init__(self, options: VLMRewardOptions):
        super().__init__(options)

    def _batch_kind(self, item: Prepared) -> int:
        return int(item.image is not None)

    def _forward(self, items: Sequence[Prepared]) -> torch.Tensor:
        """Scores of ``items`` in order; inputs with and without an image go through the VLM as
        separate sub-batches (a processor batch cannot mix them)."""
        parts = [[i for i, it in enumerate(items) if (it.image is not None) is has] for has in (False, True)]
        parts = [p for p in parts if p]
        if len(parts) < 2:
            return super()._forward(items)
        scores = torch.cat([super(VLMRewardModel, self)._forward([items[i] for i in p]) for p in parts])
        where = torch.empty(len(items), dtype=torch.long)
        where[[i for p in parts for i in p]] = torch.arange(len(items))
        return scores[where.to(scores.device)]

    def _saves_backbone(self) -> bool:
        return self.options.train_backbone

    def _build_backbone(self, folder: Path | None) -> VLMBackbone:
        path = folder or Path(self.options.model_path).expanduser()
        backbone = VLMBackbone(path, self.options.max_length, self.options.device)
        backbone.freeze_bottom(0 if self.options.train_backbone else 1)
        return backbone
