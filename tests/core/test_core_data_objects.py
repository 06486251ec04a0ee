"""Data objects: JSON round-trip of every object in DATA_OBJECTS, immutability and validation."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from medgr2.data import (
    DATA_OBJECTS,
    LETTERS,
    EvalReport,
    FilterDecision,
    GenerationResult,
    GradedExample,
    GroupMetrics,
    ImageRef,
    Ledger,
    Modality,
    Prediction,
    Provenance,
    QuestionType,
    Reject,
    RewardBreakdown,
    RewardInput,
    CycleLedger,
    SeedItem,
    TrainResult,
    VQASample,
    evolve,
    stable_hash,
)
from medgr2.store import read_jsonl, write_jsonl

IMAGE = ImageRef(path="Images/ISIC/0001.jpg", root="/data/isic", loader="file", frame=2, sha256="ab" * 32,
                 modality=Modality.DERMOSCOPY, width=600, height=450)
PROVENANCE = Provenance(source_dataset="ham10000", source_id="ISIC_0001", generator="gemini",
                        generator_version="1.2", model_id="gemini-2.5-flash", prompt_strategy="step_by_step",
                        template_hash="0123abcd", cycle=2, seed=7,
                        created_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc),
                        raw={"reply": "{\"question\": \"…\"}"})
REWARD = RewardBreakdown(total=7.25, terms={"rm": 7.0, "format": 0.25}, model_version="rm-3")
SAMPLE = VQASample(images=(IMAGE, IMAGE.model_copy(update={"frame": 3})), question="Which lesion is shown?",
                   options=("melanoma", "naevus", "keratosis"), answer="naevus", rationale="Symmetric, regular.",
                   modality=Modality.DERMOSCOPY, question_type=QuestionType.DISEASE_DIAGNOSIS,
                   provenance=PROVENANCE, reward=REWARD, split="train", subject_id="lesion-9",
                   tags=("generated", "cycle-2"))
METRICS = GroupMetrics(n=10, correct=7, invalid=1, accuracy=0.7, accuracy_valid_only=7 / 9, ci95=(0.39, 0.89),
                       macro_f1=0.66, balanced_accuracy=0.68, auroc=0.81)

EXAMPLES = {
    ImageRef: IMAGE,
    Provenance: PROVENANCE,
    RewardBreakdown: REWARD,
    VQASample: SAMPLE,
    SeedItem: SeedItem(id="ham-1", dataset="ham10000", image=IMAGE, modality=Modality.DERMOSCOPY,
                       labels={"diagnosis": "naevus", "age": "45"}, subject_id="lesion-9", split="val",
                       text="A report."),
    Reject: Reject(stage="generate", id="ham-2", reason="invalid_json", detail="Expecting value: line 1"),
    RewardInput: RewardInput(image=IMAGE, question="Q?", answer="naevus", rationale="because"),
    GradedExample: GradedExample(image=IMAGE, question="Q?", answer="naevus", rationale="r", target=-6.0, grade=4,
                                 group_id="report-1", split="test", origin="grade"),
    FilterDecision: FilterDecision(sample_id=SAMPLE.id, filter="threshold", keep=False, reason="below_tau",
                                   score=3.5),
    CycleLedger: CycleLedger(cycle=1, generated=4, valid=3, kept=2, requests=4, optimizer_steps={"sft": 3},
                             rm_promoted=False, warnings=("R_φ kept",)),
    Prediction: Prediction(question_id="q1", question="Q?", options=("a", "b"), gt_answer="a", model_answer="b",
                           modality="ct", question_type="disease_diagnosis", dataset="x", option_scores=(0.2, 0.8)),
    GroupMetrics: METRICS,
    EvalReport: EvalReport(scorer="medgr2", overall=METRICS, by_modality={"ct": METRICS},
                           by_question_type={"disease_diagnosis": METRICS}, by_dataset={"x": METRICS},
                           model="runs/x/policy", meta={"seed": 1, "protocol": ["exact"], "nested": {"k": None}}),
    Ledger: Ledger(stage="generate", requests=10, successes=8, retries=3, failures=2,
                   rejects={"invalid_json": 2}, input_tokens=1000, output_tokens=500, cost_usd=0.0125, wall_s=3.5,
                   extra={"cache_hits": 4}),
    TrainResult: TrainResult(checkpoint="runs/x/sft", version="sft-1", metrics={"loss": 0.5},
                             history=({"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}), wall_s=12.0),
    GenerationResult: GenerationResult(samples=(SAMPLE,), rejects=(Reject(stage="g", id="1", reason="r"),),
                                       ledger=Ledger(stage="generate", requests=2, successes=1, failures=1)),
}


def test_every_data_object_has_an_example():
    missing = [cls.__name__ for cls in DATA_OBJECTS if cls not in EXAMPLES]
    assert not missing, f"add a representative instance of {missing} to EXAMPLES in this test"


@pytest.mark.parametrize("cls", DATA_OBJECTS, ids=lambda c: c.__name__)
def test_json_round_trip(cls, tmp_path):
    obj = EXAMPLES[cls]
    assert type(obj) is cls
    assert cls.model_validate_json(obj.model_dump_json()) == obj
    assert cls.model_validate(obj.model_dump(mode="json")) == obj
    write_jsonl(tmp_path / "x.jsonl", [obj, obj])
    assert read_jsonl(tmp_path / "x.jsonl", cls) == [obj, obj]


@pytest.mark.parametrize("cls", DATA_OBJECTS, ids=lambda c: c.__name__)
def test_objects_are_frozen_and_strict(cls):
    obj = EXAMPLES[cls]
    field = next(iter(cls.model_fields))
    with pytest.raises(ValidationError):
        setattr(obj, field, getattr(obj, field))
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        cls.model_validate({**obj.model_dump(), "unexpected": 1})


def test_round_trip_keeps_types():
    back = VQASample.model_validate_json(SAMPLE.model_dump_json())
    assert isinstance(back.images, tuple) and isinstance(back.options, tuple)
    assert back.modality is Modality.DERMOSCOPY and back.question_type is QuestionType.DISEASE_DIAGNOSIS
    assert back.provenance.created_at == PROVENANCE.created_at and back.provenance.created_at.tzinfo is not None


# ------------------------------------------------------------------------------------------ VQASample


def sample(**kw):
    base = {"images": (IMAGE,), "question": "Q?", "options": ("a", "b", "c"), "answer": "b"}
    return VQASample(**{**base, **kw})


@pytest.mark.parametrize("n", [2, 5, 8])
def test_two_to_eight_options(n):
    options = tuple(f"option {i}" for i in range(n))
    s = sample(options=options, answer=options[-1])
    assert s.answer_letter == LETTERS[n - 1] and s.answer_index == n - 1


@pytest.mark.parametrize("options", [("a",), tuple(f"o{i}" for i in range(9)), ()])
def test_option_count_out_of_range(options):
    with pytest.raises(ValidationError, match="options"):
        sample(options=options, answer=options[0] if options else "a")


@pytest.mark.parametrize("options", [("a", "b", "a"), ("Pneumonia", "pneumonia "), ("a", " ")])
def test_options_unique_and_not_blank(options):
    with pytest.raises(ValidationError, match="not unique|blank"):
        sample(options=options, answer="a")


def test_answer_must_be_an_option():
    with pytest.raises(ValidationError, match=r"answer 'd' is not one of the options \['a', 'b', 'c'\]"):
        sample(answer="d")


def test_blank_question_and_no_image():
    with pytest.raises(ValidationError, match="question is blank"):
        sample(question="   ")
    with pytest.raises(ValidationError):
        sample(images=())


def test_letters_and_options_text():
    s = sample()
    assert (s.answer_index, s.answer_letter) == (1, "B")
    assert s.options_text() == "A. a\nB. b\nC. c"
    assert LETTERS == "ABCDEFGH"


def test_content_id_is_stable_and_content_based():
    a, b = sample(), sample()
    assert a.id == b.id == a.content_id and len(a.id) == 16
    assert sample(answer="c").id != a.id
    assert sample(question="Other?").id != a.id
    assert sample(rationale="does not change identity").id == a.id
    assert sample(id="custom").id == "custom"


def test_stages_make_new_objects():
    s = sample()
    scored = s.model_copy(update={"reward": REWARD})
    assert s.reward is None and scored.reward == REWARD and scored.id == s.id
    changed = evolve(s, answer="c")
    assert changed.answer == "c" and changed.id == sample(answer="c").id and s.answer == "b"
    with pytest.raises(ValidationError):
        evolve(s, answer="not an option")


def test_graded_example_bounds_and_ids():
    with pytest.raises(ValidationError):
        GradedExample(answer="x", target=10.5, grade=1)
    with pytest.raises(ValidationError):
        GradedExample(answer="x", target=0, grade=5)
    g = GradedExample(answer="x", target=10, grade=1, group_id="r1")
    assert g.id == GradedExample(answer="x", target=10, grade=1, group_id="r1").id
    assert g.id != GradedExample(answer="x", target=6, grade=2, group_id="r1").id


def test_reward_input_from_sample():
    s = sample(rationale="why")
    ri = RewardInput.from_sample(s)
    assert ri.answer == "b" and ri.image == IMAGE and "A. a" in ri.question and ri.rationale == "why"
    assert RewardInput.from_sample(s, answer="c").answer == "c"


def test_enums_and_image_keys():
    assert len([m for m in Modality if m is not Modality.OTHER]) == 8
    assert Modality.XRAY.label == "X-ray" and QuestionType.LESION_GRADING.label == "Lesion Grading"
    assert IMAGE.key == IMAGE.sha256
    no_hash = ImageRef(path="a.png", root="/r")
    assert no_hash.key == stable_hash("/r", "a.png", None) != ImageRef(path="a.png", root="/r", frame=1).key
    with pytest.raises(ValidationError):
        ImageRef(path="")
