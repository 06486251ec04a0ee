"""overlap (with and without allow_overlap) and contamination (planted 13-gram and image overlaps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from filters_helpers import ctx_fixture, freg_fixture, make_sample, save_png, texture  # noqa: F401 (fixtures)

from medgr2.data import ImageRef
from medgr2.store import write_jsonl

LONG = (
    "A 54-year-old woman with a long history of smoking presents with progressive dyspnoea and a dry cough; "
    "which finding on this frontal chest radiograph best supports the diagnosis of interstitial lung disease?"
)
# shares exactly the 13 words "which finding on this frontal chest radiograph best supports the diagnosis of
# interstitial" with LONG, nothing longer before it
PLANTED = (
    "In a febrile child, which finding on this frontal chest radiograph best supports the diagnosis of "
    "interstitial pneumonitis rather than lobar pneumonia?"
)
TWELVE = (
    "In a febrile child, which finding on this frontal chest radiograph best supports the diagnosis of "
    "bacterial pneumonia?"
)  # shares only 12 consecutive words with LONG


# ------------------------------------------------------------------ overlap


@pytest.mark.parametrize(
    ("option", "allow_run", "keep", "code"),
    [
        (None, False, [True, False, False], ["new", "in_dgen", "in_dgen"]),
        (None, True, [True, True, True], ["new", "in_dgen_allowed", "in_dgen_allowed"]),
        (True, False, [True, True, True], ["new", "in_dgen_allowed", "in_dgen_allowed"]),
        (False, True, [True, False, False], ["new", "in_dgen", "in_dgen"]),
    ],
)
def test_overlap_table(freg, ctx, option, allow_run, keep, code):
    old = make_sample("Which organ is shown in this abdominal CT slice?", "liver", reward=7.0)
    same_content = make_sample(
        "which ORGAN is shown in this abdominal CT slice",
        "Liver",
        image=old.images[0],
        options=("Liver", "spleen", "kidney"),
        reward=9.0,
    )
    samples = [
        make_sample("Is the heart enlarged on this radiograph?", "yes", options=("yes", "no")),
        old.model_copy(update={"reward": None}),
        same_content,
    ]
    ctx.allow_overlap = allow_run
    options = {} if option is None else {"allow_overlap": option}
    out = freg.create("filter", "overlap", options).apply(samples, [old], ctx)
    assert [d.keep for d in out] == keep
    assert [d.reason.split(":")[0] for d in out] == code
    assert f"same id {old.id}" in out[1].reason
    assert f"same question, answer and image as D_gen sample {old.id}" in out[2].reason
    assert out[2].score == 9.0


# ------------------------------------------------------------------ contamination


def _eval_file(tmp_path, samples):
    path = tmp_path / "eval.jsonl"
    write_jsonl(path, samples)
    return str(path)


def test_planted_13gram_overlap_is_removed_and_reported(freg, ctx, tmp_path):
    ev = make_sample(LONG, "reticular opacities", sid="ev1")
    samples = [
        make_sample(PLANTED, "reticular opacities", sid="s-planted"),
        make_sample(TWELVE, "air bronchograms", sid="s-twelve"),
        make_sample("What is the modality of this image?", "CT", options=("CT", "MRI"), sid="s-short"),
    ]
    out = freg.create(
        "filter", "contamination", {"eval_paths": [_eval_file(tmp_path, [ev])], "check_images": False}
    ).apply(samples, [], ctx)
    assert [d.keep for d in out] == [False, True, True]
    assert out[0].reason.startswith(
        "eval_text_overlap: shares the 13-gram 'which finding on this frontal chest "
        "radiograph best supports the diagnosis of interstitial' with eval item eval:ev1"
    )
    assert out[1].reason == "clean: no overlap with 1 eval items"
    report = json.loads((ctx.work_dir / "contamination.json").read_text())
    assert report["removed"] == 1 and report["removed_ids"] == ["s-planted"]
    assert report["removed_by_kind"] == {"text": 1, "image": 0}
    assert report["eval_set"]["items"] == 1 and report["checked"] == 3


@pytest.mark.parametrize(("n", "keep"), [(13, True), (12, False), (8, False)])
def test_ngram_length_option(freg, ctx, tmp_path, n, keep):
    flt = freg.create(
        "filter",
        "contamination",
        {"eval_paths": [_eval_file(tmp_path, [make_sample(LONG)])], "ngram": n, "check_images": False},
    )
    assert flt.apply([make_sample(TWELVE)], [], ctx)[0].keep is keep


@pytest.mark.parametrize(("short_texts", "keep"), [("skip", [True, True]), ("whole", [False, True])])
def test_short_texts_are_skipped_or_matched_as_a_whole(freg, ctx, short_texts, keep):
    ev = make_sample("What is the modality of this image?", "CT", options=("CT", "MRI", "X-ray"))
    ctx.eval_samples = [ev]
    options = {"check_images": False, "short_texts": short_texts}
    flt = freg.create("filter", "contamination", options)
    same = make_sample("What is the MODALITY of this image", "CT", options=("CT", "MRI", "X-ray"))
    other = make_sample("What is the modality of this image?", "MRI", options=("MRI", "CT", "X-ray"))
    assert [d.keep for d in flt.apply([same, other], [], ctx)] == keep


def test_image_overlap_by_file_and_by_perceptual_hash(freg, ctx, tmp_path):
    rng = np.random.default_rng(1)
    eval_ref = save_png(tmp_path, "eval.png", texture(5))
    ctx.eval_samples = [make_sample(LONG, image=eval_ref, sid="e")]
    samples = [
        make_sample(
            "Which organ is shown?", image=ImageRef(path="eval.png", root=str(tmp_path)), sid="same-file"
        ),
        make_sample(
            "Which organ is shown?",
            image=save_png(tmp_path, "n.png", texture(5) + rng.normal(0, 2, (96, 96))),
            sid="noised",
        ),
        make_sample("Which organ is shown?", image=save_png(tmp_path, "other.png", texture(6)), sid="other"),
    ]
    out = freg.create("filter", "contamination", {}).apply(samples, [], ctx)
    assert [d.keep for d in out] == [False, False, True]
    assert out[0].reason == "eval_image_overlap: image same image file of eval item eval:e"
    assert out[1].reason.startswith("eval_image_overlap: image perceptual hash within")
    keyed = freg.create("filter", "contamination", {"image_hash": "key"}).apply(samples, [], ctx)
    assert [d.keep for d in keyed] == [False, True, True]
    report = json.loads((ctx.work_dir / "contamination.json").read_text())
    assert report["removed_by_kind"] == {"text": 0, "image": 1}


def test_omnimedvqa_layout_root(freg, ctx, tmp_path):
    root = tmp_path / "OmniMedVQA"
    qa = root / "QA_information" / "Open-access"
    qa.mkdir(parents=True)
    (root / "Images" / "Demo").mkdir(parents=True)
    save_png(root / "Images" / "Demo", "x1.png", texture(9))
    (qa / "Demo.json").write_text(
        json.dumps(
            [
                {
                    "dataset": "Demo",
                    "question_id": "q1",
                    "question_type": "Disease Diagnosis",
                    "question": LONG,
                    "option_A": "reticular opacities",
                    "option_B": "normal",
                    "gt_answer": "reticular opacities",
                    "image_path": "Images/Demo/x1.png",
                    "modality_type": "X-Ray",
                },
            ]
        )
    )
    samples = [
        make_sample(PLANTED, sid="text"),
        make_sample("Anything odd?", sid="image", image=save_png(tmp_path, "copy.png", texture(9))),
        make_sample("Anything odd?", sid="clean", image=save_png(tmp_path, "c.png", texture(10))),
    ]
    flt = freg.create("filter", "contamination", {"omnimedvqa_roots": [str(root)]})
    out = flt.apply(samples, [], ctx)
    assert [d.keep for d in out] == [False, False, True]
    assert "eval item Demo:q1" in out[0].reason and "eval item Demo:q1" in out[1].reason


def test_missing_eval_set_and_bad_paths_are_clear_errors(freg, ctx, tmp_path):
    s = [make_sample(LONG)]
    with pytest.raises(ValueError, match="has no evaluation set"):
        freg.create("filter", "contamination", {}).apply(s, [], ctx)
    with pytest.raises(ValueError, match="is not a file"):
        freg.create("filter", "contamination", {"eval_paths": [str(tmp_path / "nope.jsonl")]}).apply(
            s, [], ctx
        )
    with pytest.raises(ValueError, match="no OmniMedVQA QA files"):
        freg.create("filter", "contamination", {"omnimedvqa_roots": [str(tmp_path)]}).apply(s, [], ctx)
