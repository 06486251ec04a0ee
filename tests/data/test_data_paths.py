"""Hostile image paths: a fuzz set of 200+ escapes, every one refused before any byte is read."""

from __future__ import annotations

import itertools
import json
import os

import pytest
from PIL import Image

from medgr2.data import ImageRef
from medgr2.images import UnsafePathError, open_image
from medgr2_datasets.fixtures import write_omnimedvqa_fixture

TARGETS = ["secret.png", "../secret.png", "etc/passwd", "Windows/win.ini"]
TRAVERSALS = [  # relative escapes: also tried behind harmless prefixes
    "../{t}",
    "../../{t}",
    "../../../../../../{t}",
    "a/../../{t}",
    "a/b/../../../{t}",
    "..\\{t}",
    "a\\..\\..\\{t}",
    "..\\..\\{t}",
    "..//{t}",
    "a/./../../{t}",
    "%2e%2e/{t}",
    "%2e%2e%2f{t}",
    "..%2f{t}",
    "..%5c{t}",
    "%252e%252e%252f{t}",
    "%2E%2E/%2E%2E/{t}",
    "\uff0e\uff0e/{t}",
    "\uff0e\uff0e\uff0f{t}",
    "..\uff0f{t}",
    "{t}\x00.png",
    "a\x00/../../{t}",
    "\x00{t}",
]
ROOTED = [  # absolute, UNC and drive-letter paths
    "/{t}",
    "//{t}",
    "///{t}",
    "\\{t}",
    "\\\\server\\share\\{t}",
    "//server/share/{t}",
    "C:\\{t}",
    "C:/{t}",
    "c:{t}",
    "Z:\\..\\{t}",
    "\\\\?\\C:\\{t}",
    "%2f{t}",
    "%5c%5cserver%5c{t}",
]
SYMLINKS = [
    "escape_dir/secret.png",
    "escape_link.png",
    "nested/escape_dir/secret.png",
    "loop/../escape_link.png",
    "images/../escape_dir/secret.png",
    "./escape_link.png",
]
PREFIXES = ["", "images/", "./", "images/./"]


def hostile_paths() -> list[str]:
    """Traversals (x targets x prefixes), rooted paths (x targets) and symlink escapes."""
    out = [prefix + esc.format(t=t) for esc, t, prefix in itertools.product(TRAVERSALS, TARGETS, PREFIXES)]
    out += [esc.format(t=t) for esc, t in itertools.product(ROOTED, TARGETS)]
    return sorted(set(out + SYMLINKS))


@pytest.fixture
def jail(tmp_path):
    """A dataset root with symlinks that escape it, beside a real image it must never reach."""
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(outside / "secret.png")
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    (root / "nested").mkdir()
    (root / "loop").mkdir()
    Image.new("RGB", (4, 4)).save(root / "images" / "ok.png")
    os.symlink(outside, root / "escape_dir")
    os.symlink(outside, root / "nested" / "escape_dir")
    os.symlink(outside / "secret.png", root / "escape_link.png")
    (tmp_path / "secret.png").write_bytes((outside / "secret.png").read_bytes())
    return root


def test_fuzz_hostile_paths_all_refused(jail, registry):
    paths = hostile_paths()
    assert len(paths) >= 200
    refused = 0
    for p in paths:
        for loader in ("file", "npz", "nifti", "dicom"):
            ref = ImageRef(path=p if loader != "npz" else p + "#train_images", root=str(jail), loader=loader)
            with pytest.raises(UnsafePathError):
                open_image(ref, registry)
        refused += 1
    assert refused == len(paths)
    assert open_image(ImageRef(path="images/ok.png", root=str(jail)), registry).size == (4, 4)


def test_hostile_paths_in_a_dataset_become_rejects(tmp_path):
    from medgr2_datasets.omnimedvqa import OmniMedVQASource
    from medgr2_datasets.options import OmniMedVQAOptions

    root = write_omnimedvqa_fixture(tmp_path, n_per_dataset=1)
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "secret.png")
    for d in ("nested", "loop", "images"):
        (root / d).mkdir()
    os.symlink(outside, root / "escape_dir")
    os.symlink(outside, root / "nested" / "escape_dir")
    os.symlink(outside / "secret.png", root / "escape_link.png")
    f = root / "QA_information" / "Open-access" / "BUSI.json"
    template = json.loads(f.read_text())[0]
    paths = hostile_paths()
    f.write_text(
        json.dumps([{**template, "question_id": str(i), "image_path": p} for i, p in enumerate(paths)])
    )
    seed = OmniMedVQASource(OmniMedVQAOptions(root=root, datasets=["BUSI"])).load()
    assert len(seed.samples) == 0
    assert len(seed.rejects) == len(paths)
    assert {r.reason for r in seed.rejects} == {"unsafe_path"}


def test_pkg_paths_cannot_leave_the_package(registry):
    for p in (
        "pkg://skimage/../../os.py",
        "pkg://skimage//etc/passwd",
        "pkg://skimage/%2e%2e/__init__.py",
        "pkg://pydicom/..\\..\\config.py",
    ):
        with pytest.raises(UnsafePathError):
            open_image(ImageRef(path=p, loader="pkg"), registry)
    with pytest.raises(FileNotFoundError, match="not installed"):
        open_image(ImageRef(path="pkg://nosuchpackage/x.png", loader="pkg"), registry)
