"""Options models of the built-in dataset sources, image loaders and the ``labels`` generator.

Kept light (pydantic only) so that the plugin can register them without importing pydicom,
nibabel or PIL. Every model forbids unknown keys, so a typo in a config is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medgr2.data import Modality, QuestionType

Verify = Literal["none", "header", "decode"]
SPLITS = ("train", "val", "test")


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceOptions(_Options):
    """What every dataset source accepts: where it is, its name, and how it splits."""

    root: Path = Field(description="The dataset's root folder; every image path must stay inside it.")
    name: str | None = Field(default=None, description="Dataset name put on items (default: per source).")
    seed: int = Field(default=0, description="Seed of the grouped train/val/test split.")
    fractions: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1},
        description="Share of subjects per split (train/val/test), normalised to sum 1.",
    )
    extra_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every item, e.g. {body_part: chest}."
    )
    limit: int | None = Field(default=None, ge=1, description="Keep at most this many items (after sorting).")

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}: use train, val, test")
        if any(x < 0 for x in v.values()) or sum(v.values()) <= 0:
            raise ValueError("split fractions must be >= 0 and sum to more than 0")
        return v


class OmniMedVQAOptions(SourceOptions):
    """``omnimedvqa``: the official OmniMedVQA layout (``QA_information/`` + ``Images/``)."""

    include_restricted: bool = Field(default=True, description="Also read QA_information/Restricted-access.")
    datasets: list[str] | None = Field(default=None, description="Only these dataset files (JSON stem).")
    check_images: bool = Field(
        default=True,
        description="Reject records whose image is missing or cannot be decoded (each image decoded once).",
    )
    modalities: list[Modality] | None = Field(default=None, description="Only records of these modalities.")
    question_types: list[QuestionType] | None = Field(
        default=None, description="Only records of these question types."
    )
    seed_items: bool = Field(
        default=True,
        description="Also yield one seed item per distinct train-split image (labels: modality, question types, "
        "the correct answers as findings) for the generators; images of val/test questions never become items.",
    )


class MedR1Options(SourceOptions):
    """``medr1``: Med-R1 split files ``Splits/{modality,question_type}/{train,test}/*.json``."""

    splits_dir: str = Field(default="Splits", description="Folder of the split files, relative to root.")
    by: Literal["modality", "question_type"] = Field(default="modality", description="Which split family.")
    names: list[str] | None = Field(
        default=None, description="Only split files whose stem contains one of these."
    )
    splits: list[Literal["train", "test"]] = Field(
        default_factory=lambda: ["train", "test"], description="Which Med-R1 splits to read."
    )
    seed_items: bool = Field(
        default=True,
        description="Also yield one seed item per distinct train-split image (labels: modality, question types, "
        "the correct answers as findings) for the generators; images of val/test questions never become items.",
    )
    check_images: bool = Field(
        default=True,
        description="Reject records whose image is missing or cannot be decoded (each image decoded once).",
    )


class ImageFolderOptions(SourceOptions):
    """Options shared by sources reading ordinary image files."""

    modality: Modality = Field(default=Modality.OTHER, description="Modality of every image.")
    extensions: list[str] = Field(
        default_factory=lambda: [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".dcm"],
        description="Image file extensions to index (lower case).",
    )
    verify: Verify = Field(
        default="decode",
        description="decode: decode every image once at load (truncated/corrupt files become rejects); "
        "header: read sizes only (a truncated file passes, and fails later); none: trust files.",
    )
    class_names: dict[str, str] = Field(
        default_factory=dict, description="Raw class -> human-readable name (overrides built-ins)."
    )
    label_key: str = Field(default="diagnosis", description="Label key the class is stored under.")


class FoldersOptions(ImageFolderOptions):
    """``folders``: one folder per class (``benign/ malignant/ normal/``), or class in the file name."""

    class_from: Literal["folder", "filename"] = Field(
        default="folder", description="Class = sub-folder name or part of the file name."
    )
    filename_pattern: str = Field(
        default=r"^(?P<label>[A-Za-z]+)[-_ ]",
        description="Regex with a 'label' group, when class_from=filename.",
    )
    exclude_pattern: str | None = Field(
        default=r"_mask(_\d+)?$", description="File stems matching this regex are skipped (masks)."
    )
    subject_pattern: str | None = Field(
        default=None, description="Regex with a 'subject' group on the file stem (grouping)."
    )


class CsvOptions(ImageFolderOptions):
    """``csv``: a metadata CSV plus a folder of images, mapped by column names."""

    preset: Literal["ham10000", "figure1"] | None = Field(
        default=None, description="Fill unset options from a built-in mapping (HAM10000, Figure1 COVID)."
    )
    csv: str = Field(default="metadata.csv", description="The CSV file, relative to root.")
    images_dir: str = Field(default="images", description="The image folder, relative to root.")
    id_column: str = Field(default="image_id", description="Column naming the image (file stem).")
    image_template: str | None = Field(
        default=None, description="File name from the id, e.g. '{id}.jpg'; None: any extension."
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Label key -> CSV column, e.g. {diagnosis: dx, age: age}."
    )
    subject_column: str | None = Field(default=None, description="Column grouping images of one subject.")
    subject_pattern: str | None = Field(
        default=None, description="Regex with a 'subject' group applied to the id (grouping)."
    )
    text_column: str | None = Field(default=None, description="Column of free text (notes) kept on the item.")
    encoding: str | None = Field(default=None, description="CSV encoding (default: utf-8, then latin-1).")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset"):
            preset = CSV_PRESETS.get(data["preset"])
            if preset is not None:
                data = {**preset, **data}
        return data


CSV_PRESETS: dict[str, dict[str, Any]] = {
    "ham10000": {
        "name": "HAM10000",
        "csv": "HAM10000_metadata.csv",
        "images_dir": "images",
        "id_column": "image_id",
        "image_template": "{id}.jpg",
        "modality": "dermoscopy",
        "subject_column": "lesion_id",
        "columns": {"diagnosis": "dx", "age": "age", "sex": "sex", "site": "localization"},
        "extra_labels": {"body_part": "skin"},
    },
    "figure1": {
        "name": "Figure1-COVID",
        "csv": "metadata.csv",
        "images_dir": "images",
        "id_column": "patientid",
        "modality": "xray",
        "subject_pattern": r"^(?P<subject>.*?\d+)[a-z]?$",
        "text_column": "notes",
        "columns": {"diagnosis": "finding", "age": "age", "sex": "sex", "view": "view"},
        "extra_labels": {"body_part": "chest"},
    },
}
"""Built-in column mappings for ``csv`` (``preset: ham10000``); explicit options win."""


class MedMNISTOptions(SourceOptions):
    """``medmnist``: a MedMNIST ``.npz`` (``{split}_images`` / ``{split}_labels``)."""

    file: str = Field(description="The .npz file, relative to root (e.g. pneumoniamnist.npz).")
    class_names: dict[str, str] = Field(
        default_factory=dict, description="Label index -> class name (built-ins for known files)."
    )
    label_key: str = Field(default="diagnosis", description="Label key the class is stored under.")
    modality: Modality | None = Field(default=None, description="Modality (default: from the file name).")
    split_map: dict[str, Literal["train", "val", "test"]] = Field(
        default_factory=dict, description="File split -> our split, e.g. {val: test}; others keep their name."
    )
    use_source_splits: bool = Field(
        default=True, description="Keep the file's splits; false: re-split by seed/fractions."
    )


class NiftiVolume(_Options):
    """One volume with its segmentation."""

    image: str = Field(description="The image volume (.nii/.nii.gz), relative to root.")
    segmentation: str | None = Field(default=None, description="Segmentation on the same grid.")
    modality: Modality = Field(default=Modality.CT, description="ct or mri (decides windowing).")
    subject: str | None = Field(default=None, description="Subject id (default: the image file name).")


class NiftiOptions(SourceOptions):
    """``nifti``: volumes + segmentations + a label map -> 2D slices labelled with the organs in them."""

    volumes: list[NiftiVolume] = Field(min_length=1, description="The volumes to slice.")
    label_map: str | dict[str, Any] | None = Field(
        default="labels.json",
        description="JSON file (or mapping): value -> organ, or seg file -> {value: organ}.",
    )
    axis: int = Field(default=2, ge=0, le=2, description="Slicing axis (2: axial).")
    min_voxels: int = Field(
        default=20, ge=1, description="Voxels an organ needs in a slice to count as present."
    )
    skip_empty: bool = Field(default=True, description="Drop slices with no organ present.")
    body_part: str = Field(default="abdomen", description="body_part label of every slice.")


class DicomOptions(SourceOptions):
    """``dicom``: a folder of DICOM files (modality and body part from the tags)."""

    pattern: str = Field(default="**/*", description="Glob of files to try, relative to root.")
    max_frames: int = Field(default=16, ge=1, description="Items per multi-frame file at most.")
    subject_salt: str = Field(
        default="medgr2", description="Salt of the one-way hash that turns PatientID into subject ids."
    )
    verify: Verify = Field(
        default="decode", description="decode: parse tags and decode the pixels once; header: tags only."
    )


class DemoOptions(_Options):
    """``demo``: package-bundled images (pydicom, pydicom-data, scikit-image) plus the embedded corpus."""

    seed: int = Field(default=0, description="Seed of the grouped split.")
    fractions: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.6, "val": 0.2, "test": 0.2},
        description="Share of subjects per split.",
    )
    packages: list[Literal["skimage", "pydicom", "pydicom-data"]] = Field(
        default_factory=lambda: ["skimage", "pydicom", "pydicom-data"], description="Packages to read."
    )
    max_frames: int = Field(default=4, ge=1, description="Items per multi-frame DICOM at most.")
    corpus: bool = Field(
        default=True,
        description="Also read the embedded real corpus (demo_corpus/: 380 PneumoniaMNIST chest X-rays, "
                    "50 TotalSegmentator CT/MR slices; splits recorded in corpus.json, grouped by image/volume).",
    )


class LoaderOptions(_Options):
    """Options of the image loaders (bound as keyword arguments)."""

    max_pixels: int = Field(default=40_000_000, ge=1, description="Refuse images with more pixels.")


class WindowedLoaderOptions(LoaderOptions):
    """Options of the DICOM/NIfTI/package loaders."""

    ct_window: tuple[float, float] | None = Field(
        default=(40.0, 400.0), description="CT (centre, width) in HU; None: percentile stretch."
    )


class DefectRates(_Options):
    """Shares of ``labels`` samples given each defect LLM generators make (see ``medgr2_datasets.defects``).

    Each kind is drawn on disjoint samples; the kind is recorded in ``provenance.raw["defect"]``.
    """

    wrong_confusable: float = Field(default=0.0, ge=0.0, le=1.0, description=(
        "Answer set to a confusable wrong class, with a rationale arguing for it."))
    contradicting_rationale: float = Field(default=0.0, ge=0.0, le=1.0, description=(
        "Right answer, rationale argues for another option."))
    unanswerable: float = Field(default=0.0, ge=0.0, le=1.0, description=(
        "Question about a finding or modality the image cannot show."))
    bad_rationale: float = Field(default=0.0, ge=0.0, le=1.0, description=(
        "Right answer, rationale truncated mid-sentence or its words scrambled."))
    bad_options: float = Field(default=0.0, ge=0.0, le=1.0, description=(
        "Distractors from an unrelated label space, or one a near-copy of the answer."))

    @model_validator(mode="after")
    def _at_most_one(self) -> DefectRates:
        if sum(self.model_dump().values()) > 1.0 + 1e-9:
            raise ValueError(f"defect rates sum to {sum(self.model_dump().values()):g} > 1; each is a share "
                             "of all samples, drawn on disjoint samples, e.g. {wrong_confusable: 0.2}")
        return self


class LabelsOptions(_Options):
    """``labels``: the offline question builder (multiple choice from labels and metadata)."""

    question_types: list[QuestionType] = Field(
        default_factory=lambda: list(QuestionType),
        description="Question types to build when the labels allow.",
    )
    per_item: int = Field(default=2, ge=1, le=20, description="Questions per image at most.")
    max_options: int = Field(default=4, ge=2, le=8, description="Options per question at most (2..8).")
    seed: int | None = Field(default=None, description="Seed (None: the run seed from the context).")
    label_noise: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of samples whose answer is set to a wrong option (tag 'noisy').",
    )
    class_names: dict[str, str] = Field(
        default_factory=dict, description="Raw label -> readable name; overrides the built-ins."
    )
    balance_classes: bool = Field(
        default=False,
        description="Down-sample each question type so every answer class has as many samples as the rarest.",
    )
    max_per_class: int | None = Field(
        default=None, ge=1, description="At most this many samples per (dataset, type, answer)."
    )
    defects: DefectRates = Field(
        default_factory=DefectRates,
        description="Defect model: share of samples per defect kind (all 0: clean; see DefectRates).",
    )
    closing_share: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Share of samples whose rationale ends with a confident closing sentence ('Its appearance is "
                    "typical of X, which rules out the other options.'), as LLM generators often write. A "
                    "wrong_confusable defect keeps the style of the sample it spoils, so the sentence does not "
                    "give it away.",
    )
