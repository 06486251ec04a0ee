"""Registrations of the built-in data components (light: only lazy ``"module:attr"`` targets)."""

from __future__ import annotations

from medgr2 import hookimpl

_PKG = "medgr2_datasets"
_OPT = f"{_PKG}.options"


@hookimpl
def medgr2_register_datasets(registry):
    """Dataset sources: ready-made VQA sets, labelled image layouts and the offline demo corpus."""
    registry.add("omnimedvqa", f"{_PKG}.omnimedvqa:OmniMedVQASource", config=f"{_OPT}:OmniMedVQAOptions",
                 description="OmniMedVQA official layout (QA_information/ + Images/), quirks handled")
    registry.add("medr1", f"{_PKG}.omnimedvqa:MedR1Source", config=f"{_OPT}:MedR1Options",
                 description="Med-R1 split files (Splits/{modality,question_type}/{train,test})")


@hookimpl
def medgr2_register_image_loaders(registry):
    """Image loaders keyed by ``ImageRef.loader``."""
    registry.add("file", f"{_PKG}.loaders:load_file", config=f"{_OPT}:LoaderOptions",
                 description="Any image PIL reads (16-bit and grey converted to 8-bit RGB)")
