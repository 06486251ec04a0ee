"""dedup: exact and near duplicates planted among distinct samples, within a batch and against D_gen."""

from __future__ import annotations

import numpy as np
import pytest
from filters_helpers import ctx_fixture, freg_fixture, make_sample, save_png, texture  # noqa: F401 (fixtures)
from medgr2_filters.dedup import DedupFilter, candidate_pairs
from medgr2_filters.options import DedupOptions

Q = (
    "Based on the chest radiograph, which finding best explains the patient's shortness of breath and "
    "reduced breath sounds over the left lower zone?"
)
Q_EDIT = (
    "Based on this chest radiograph, which finding best explains the patient's shortness of breath and "
    "reduced breath sounds over the left lower zone?"
)
Q_OTHER = "Which imaging modality was used to acquire this picture of the retina, and what does it show?"


@pytest.fixture
def images(tmp_path):
    """Two unrelated textures, a noised copy and a resized copy of the first."""
    rng = np.random.default_rng(0)
    base = texture(1)
    return {
        "a": save_png(tmp_path, "a.png", base),
        "a_noise": save_png(tmp_path, "a_noise.png", base + rng.normal(0, 2.0, base.shape)),
        "a_small": save_png(tmp_path, "a_small.png", texture(1, size=64)),
        "b": save_png(tmp_path, "b.png", texture(2)),
    }


def _run(freg, ctx, samples, kept=(), **options):
    return freg.create("filter", "dedup", options).apply(samples, list(kept), ctx)


def test_dedup_table(freg, ctx, images):
    a, b = images["a"], images["b"]
    cases = [
        # (question, answer, image, reward) -> (keep, reason code)
        ((Q, "left pleural effusion", a, 6.0), (False, "exact_duplicate")),
        ((Q.upper().replace(",", ""), "Left pleural effusion.", a, 8.0), (True, "best_of_duplicates")),
        ((Q_EDIT, "left pleural effusion", a, 7.0), (False, "near_duplicate")),
        ((Q, "left pleural effusion", images["a_noise"], 5.5), (False, "near_duplicate")),
        ((Q, "left pleural effusion", images["a_small"], 5.5), (False, "near_duplicate")),
        ((Q, "left pleural effusion", b, 6.0), (True, "unique")),  # same text, different image
        ((Q_OTHER, "left pleural effusion", a, 6.0), (True, "unique")),  # same image, different question
        ((Q, "right pneumothorax", b, 6.0), (True, "unique")),  # different answer, different image
    ]
    samples = [make_sample(q, ans, image=img, reward=r) for (q, ans, img, r), _ in cases]
    out = _run(freg, ctx, samples)
    assert [(d.keep, d.reason.split(":")[0]) for d in out] == [want for _, want in cases]
    assert out[0].reason == f"exact_duplicate: exact duplicate of {samples[1].id}, higher reward 8.000"
    assert out[1].reason == "best_of_duplicates: best of 5 duplicates (reward 8.000)"
    assert out[2].reason.startswith(f"near_duplicate: near duplicate of {samples[1].id}")
    assert [d.score for d in out] == [c[0][3] for c in cases]


def test_exact_mode_ignores_near_duplicates_and_decodes_nothing(freg, ctx, images, tmp_path):
    samples = [
        make_sample(Q, image=images["a"], reward=1.0),
        make_sample(Q_EDIT, image=images["a"], reward=2.0),
        make_sample(Q + " ", image=images["a"], reward=3.0),
    ]
    (tmp_path / "a.png").unlink()  # exact mode must not need pixels
    out = _run(freg, ctx, samples, mode="exact")
    assert [d.keep for d in out] == [False, True, True]
    assert out[0].reason.startswith("exact_duplicate")


def test_unscored_duplicates_keep_the_first_copy(freg, ctx, images):
    samples = [make_sample(Q, image=images["a"]), make_sample(Q, image=images["a_noise"])]
    out = _run(freg, ctx, samples)
    assert [d.keep for d in out] == [True, False]
    assert out[1].reason.endswith("earlier copy")
    assert out[0].score is None


def test_duplicates_of_dgen_are_dropped_even_when_better(freg, ctx, images):
    old = make_sample(Q, image=images["a"], reward=5.5)
    new = [
        make_sample(Q_EDIT, image=images["a_small"], reward=9.5),
        make_sample(Q_OTHER, image=images["a"], reward=9),
    ]
    out = _run(freg, ctx, new, kept=[old])
    assert [d.keep for d in out] == [False, True]
    assert out[0].reason == f"duplicate_of_kept: near duplicate of D_gen sample {old.id}"
    assert [d.keep for d in _run(freg, ctx, new, kept=[old], against_kept=False)] == [True, True]


def test_key_mode_compares_files_not_pixels(freg, ctx, images):
    samples = [
        make_sample(Q, image=images["a"]),
        make_sample(Q, image=images["a_noise"]),
        make_sample(Q_EDIT, image=images["a"]),
    ]
    out = _run(freg, ctx, samples, image_hash="key")
    assert [d.keep for d in out] == [True, True, False]


def test_undecodable_image_names_the_fix(freg, ctx, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    from medgr2.data import ImageRef

    ref = ImageRef(path="bad.png", root=str(tmp_path))
    with pytest.raises(ValueError, match="image_hash option to 'key'"):
        _run(freg, ctx, [make_sample(Q, image=ref), make_sample(Q_OTHER, image=ref)])


def test_planted_duplicates_at_scale_are_found_without_false_positives(freg, ctx, tmp_path):
    """300 distinct samples (3 templated questions on each of 100 images) plus 60 planted near copies."""
    rng = np.random.default_rng(3)
    templates = [
        (
            "In this abdominal CT slice from the portal venous phase, which organ shows the most conspicuous "
            "abnormality given the patient's history of {x}?",
            "the {y}",
        ),
        (
            "Looking at the attenuation pattern of the lesion in this contrast enhanced CT image, what is "
            "the most likely diagnosis for a patient presenting with {x}?",
            "{y} carcinoma",
        ),
        (
            "How would you grade the severity of the finding visible in this image, considering that the "
            "patient reports {x}?",
            "grade {y}",
        ),
    ]
    history = ["abdominal pain", "weight loss", "jaundice", "fever", "nausea", "anaemia", "back pain"]
    answers = [
        "liver",
        "spleen",
        "pancreas",
        "kidney",
        "gallbladder",
        "adrenal",
        "bowel",
        "stomach",
        "bladder",
    ]
    refs = [save_png(tmp_path, f"img{i}.png", texture(100 + i)) for i in range(100)]
    base = []
    for i in range(300):
        q, a = templates[i % 3]
        base.append(
            make_sample(
                q.format(x=history[i % 7]),
                answer=a.format(y=answers[(i // 3) % 9]),
                image=refs[i // 3],
                reward=float(i % 10),
            )
        )
    planted = []
    for j, i in enumerate(rng.choice(300, size=60, replace=False).tolist()):
        s = base[i]
        if j % 3 == 0:  # exact copy with cosmetic text changes
            planted.append(make_sample(s.question.upper(), answer=s.answer, image=s.images[0], reward=-1.0))
        elif j % 3 == 1:  # one word edited
            planted.append(
                make_sample(
                    s.question.replace("this", "the", 1), answer=s.answer, image=s.images[0], reward=-1.0
                )
            )
        else:  # same text, noised copy of the image
            pix = texture(100 + i // 3) + rng.normal(0, 2.0, (96, 96))
            planted.append(
                make_sample(
                    s.question, answer=s.answer, image=save_png(tmp_path, f"n{j}.png", pix), reward=-1.0
                )
            )
    out = _run(freg, ctx, base + planted)
    assert all(d.keep for d in out[:300]), [d.reason for d in out[:300] if not d.keep]
    assert not any(d.keep for d in out[300:]), [d.reason for d in out[300:] if d.keep]


def test_candidate_pairs_need_a_text_band_and_a_close_image():
    text = np.array([[1, 2], [1, 9], [5, 6], [1, 7], [1, 2]], dtype=np.uint64)
    image = np.array([0b1111, 0b0111, 0b1111, 0xFFFF0000, 0xF0], dtype=np.uint64)
    # 0-1: text band 0, images 1 bit apart; 0-2: images only; 0-3: text only; 0-4: text, images 8 bits apart
    assert candidate_pairs(text, image, max_distance=1).tolist() == [[0, 1]]
    assert candidate_pairs(text, image, max_distance=8).tolist() == [[0, 1], [0, 4], [1, 4]]


def test_dedup_filter_is_built_from_options():
    flt = DedupFilter(DedupOptions(mode="near", text_threshold=0.9))
    assert flt.options.mode == "near"


@pytest.mark.parametrize("mode", ["near", "both"])
def test_exact_copies_and_near_copies_form_one_group(freg, ctx, images, mode):
    samples = [
        make_sample(Q, image=images["a"], reward=1.0),
        make_sample(Q.lower(), image=images["a"], reward=3.0),
        make_sample(Q_EDIT, image=images["a_noise"], reward=2.0),
        make_sample(Q_OTHER, image=images["b"], reward=0.0),
    ]
    out = _run(freg, ctx, samples, mode=mode)
    assert [d.keep for d in out] == [False, True, False, True]
    assert out[1].reason == "best_of_duplicates: best of 3 duplicates (reward 3.000)"
