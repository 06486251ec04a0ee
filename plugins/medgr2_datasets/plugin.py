"""Registrations of the built-in data components (light: only lazy ``"module:attr"`` targets)."""

from __future__ import annotations

from medgr2 import hookimpl

_PKG = "medgr2_datasets"
_OPT = f"{_PKG}.options"

_SOURCES = (
    (
        "omnimedvqa",
        "omnimedvqa:OmniMedVQASource",
        "OmniMedVQAOptions",
        "OmniMedVQA official layout (QA_information/ + Images/), quirks handled",
    ),
    (
        "medr1",
        "omnimedvqa:MedR1Source",
        "MedR1Options",
        "Med-R1 split files (Splits/{modality,question_type}/...)",
    ),
    ("folders", "sources:FoldersSource", "FoldersOptions", "Class folders, or classes in file names"),
    ("csv", "sources:CsvSource", "CsvOptions", "CSV metadata + image folder (presets: ham10000, figure1)"),
    (
        "medmnist",
        "sources:MedMNISTSource",
        "MedMNISTOptions",
        "MedMNIST .npz ({split}_images/{split}_labels)",
    ),
    (
        "nifti",
        "volumes:NiftiSource",
        "NiftiOptions",
        "NIfTI volume + segmentation -> slices labelled with organs",
    ),
    ("dicom", "volumes:DicomSource", "DicomOptions", "Folder of DICOM files (modality/body part from tags)"),
    (
        "demo",
        "volumes:DemoSource",
        "DemoOptions",
        "Offline demo corpus: embedded PneumoniaMNIST + TotalSegmentator images, pydicom, scikit-image files",
    ),
)

_LOADERS = (
    ("file", "load_file", "LoaderOptions", "Any image PIL reads (16-bit and grey converted to 8-bit RGB)"),
    ("dicom", "load_dicom", "WindowedLoaderOptions", "DICOM frame, windowed to 8-bit RGB (pixels only)"),
    ("nifti", "load_nifti", "WindowedLoaderOptions", "NIfTI slice (frame = slice index), CT/MR windowing"),
    ("npz", "load_npz", "LoaderOptions", "MedMNIST array image: path 'file.npz#array', frame = index"),
    ("pkg", "load_pkg", "WindowedLoaderOptions", "Image bundled with an installed package (pkg://...)"),
)


@hookimpl
def medgr2_register_datasets(registry):
    """Dataset sources: ready-made VQA sets, labelled image layouts and the offline demo corpus."""
    for name, target, options, description in _SOURCES:
        registry.add(name, f"{_PKG}.{target}", config=f"{_OPT}:{options}", description=description)
    registry.add("hf", f"{_PKG}.hf_source:HFSource", config=f"{_PKG}.hf_source:HFOptions",
                 description="Hugging Face dataset (folder, or Hub id in the offline cache): image/question/answer")
    registry.add(
        "shared",
        f"{_PKG}.presets:SharedSource",
        config=f"{_PKG}.presets:SharedOptions",
        description="A shared real dataset by preset name (ham10000, busi, pneumoniamnist ...)",
    )


@hookimpl
def medgr2_register_image_loaders(registry):
    """Image loaders keyed by ``ImageRef.loader``."""
    for name, target, options, description in _LOADERS:
        registry.add(name, f"{_PKG}.loaders:{target}", config=f"{_OPT}:{options}", description=description)


@hookimpl
def medgr2_register_generators(registry):
    """The offline question builder."""
    registry.add(
        "labels",
        f"{_PKG}.labels:LabelsGenerator",
        config=f"{_OPT}:LabelsOptions",
        description="Offline multiple-choice questions of all five types from labels and metadata",
    )
