"""Grade builders: perturbations (table-driven, seeded), readers and the split by study."""

from __future__ import annotations

import io
import random
import tarfile

import pytest
from medgr2_reward.grades import assign_splits, build_grade_examples
from medgr2_reward.options import GRADE_TARGETS, GradeOptions
from medgr2_reward.perturb import delete_phrases, is_protected, synonym_perturb, tokenize
from medgr2_reward.readers import (
    UNLABELLED,
    Reference,
    from_samples,
    parse_iu_report,
    read_csv,
    read_iu_xray,
    read_text_lines,
)

from medgr2.data import ImageRef, Modality, VQASample

SYN = {
    "heart": ("bosom",), "size": ("sizing",), "lungs": ("lights",), "clear": ("open", "right", "no"),
    "effusion": ("outpouring",), "opacity": ("opaqueness",), "mild": ("balmy",), "small": ("little",),
    "consolidation": ("integration",), "evidence": ("grounds",), "impression": ("opinion",),
    "nodules": ("knobs",), "study": ("survey",),
}


def syn(word: str) -> tuple[str, ...]:
    """A fake synonym source; 'clear' offers protected words ('right', 'no') that must be filtered out."""
    return tuple(s for s in SYN.get(word.lower(), ()) if not is_protected(s))


def words(text: str) -> list[str]:
    return [t for t in tokenize(text) if t.strip()]


@pytest.mark.parametrize("text, protected", [
    ("No pleural effusion in the left lung. Heart size is normal.", ["No", "left", "normal"]),
    ("Small right effusion, 2 cm, without consolidation.", ["right", "2", "without"]),
    ("Two nodules in both upper lobes; not seen on 12/03 study.", ["Two", "both", "upper", "not", "12/03"]),
    ("Mild opacity at the left base. Findings: XXXX clear lungs.", ["left", "XXXX", "Findings"]),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synonyms_never_touch_numbers_negations_laterality(text, protected, seed):
    out = synonym_perturb(text, syn, random.Random(seed), rate=1.0)
    assert out is not None and out != text
    before, after = words(text), words(out)
    for p in protected:
        assert before.count(p) == after.count(p), (p, out)
    # nothing protected was introduced either ('clear' -> 'right'/'no' is filtered)
    for w in ("right", "no", "No"):
        assert after.count(w) <= before.count(w)


@pytest.mark.parametrize("text, expected", [
    ("Heart size normal.", "Bosom sizing normal."),
    ("No effusion.", "No outpouring."),
    ("Left 2 cm.", None),            # nothing replaceable
    ("", None),
])
def test_synonym_perturb_table(text, expected):
    assert synonym_perturb(text, syn, random.Random(0), rate=1.0) == expected


def test_synonym_rate_and_seed():
    text = "Heart size mild. Lungs clear. Small effusion. Mild opacity. Consolidation evidence."
    a = synonym_perturb(text, syn, random.Random(5), rate=0.3)
    assert a == synonym_perturb(text, syn, random.Random(5), rate=0.3)
    changed = sum(x != y for x, y in zip(words(text), words(a)))
    assert changed in range(1, 5)
    full = synonym_perturb(text, syn, random.Random(5), rate=1.0)
    assert sum(x != y for x, y in zip(words(text), words(full))) > changed


@pytest.mark.parametrize("rate, max_span", [(0.2, 1), (0.35, 3), (0.6, 2)])
@pytest.mark.parametrize("seed", [0, 7])
def test_delete_phrases(rate, max_span, seed):
    text = "The cardiac silhouette is within normal limits. There is no focal consolidation or pleural effusion."
    out = delete_phrases(text, random.Random(seed), rate=rate, max_span=max_span)
    assert out == delete_phrases(text, random.Random(seed), rate=rate, max_span=max_span)
    n_before = len([w for w in words(text) if w[0].isalnum()])
    n_after = len([w for w in words(out) if w[0].isalnum()])
    assert n_before - n_after == max(1, round(rate * n_before))
    assert delete_phrases("Too short", random.Random(0)) is None


def _refs(n: int = 12) -> list[Reference]:
    findings = ["normal", "cardiomegaly", "effusion", "opacity"]
    return [Reference(group_id=f"s{i}", question=f"Chest X-ray. MeSH: {findings[i % 4]}.",
                      text=f"Heart size mild number {i}. Lungs clear. Small effusion and mild opacity {i}.",
                      findings=(findings[i % 4],), modality=Modality.XRAY) for i in range(n)]


def test_grade_builder_targets_splits_and_donors():
    refs = _refs(40)
    opts = GradeOptions(seed=3, held_out_fraction=0.3)
    gs = build_grade_examples(refs, syn, opts)
    assert {e.grade: e.target for e in gs.examples} == GRADE_TARGETS
    assert {e.origin for e in gs.examples} == {"grade"}
    train, test = gs.split("train"), gs.split("test")
    assert train and test
    assert not {e.group_id for e in train} & {e.group_id for e in test}
    originals = {e.answer for e in gs.examples if e.grade == 1}
    by_text = {r.text: r for r in refs}
    for e in gs.examples:
        if e.grade == 4:  # a report of another study, same split, with different findings
            donor = by_text[e.answer]
            assert donor.group_id != e.group_id
            own = next(r for r in refs if r.group_id == e.group_id)
            assert not set(donor.findings) & set(own.findings)
            assert {x.split for x in gs.examples if x.group_id == donor.group_id} == {e.split}
        elif e.grade in (2, 3):
            assert e.answer not in originals
    # a donor whose findings are unknown may say the same as a labelled reference: never its donor
    mixed = refs + [r.model_copy(update={"group_id": f"u{i}", "text": f"Lungs clear unlabelled {i}.",
                                         "findings": (UNLABELLED,)}) for i, r in enumerate(refs[:20])]
    labelled = {r.group_id for r in refs}
    grade4 = [e for e in build_grade_examples(mixed, syn, opts).examples if e.grade == 4]
    assert {e.group_id for e in grade4} >= labelled
    assert all(not e.answer.startswith("Lungs clear unlabelled") for e in grade4 if e.group_id in labelled)
    assert any(e.group_id.startswith("u") for e in grade4)  # unlabelled references still get a donor
    # deterministic and independent of input order
    again = build_grade_examples(list(reversed(refs)), syn, opts)
    assert [e.model_dump() for e in again.examples] == [e.model_dump() for e in gs.examples]
    other = build_grade_examples(refs, syn, opts.model_copy(update={"seed": 4}))
    assert [e.answer for e in other.examples] != [e.answer for e in gs.examples]


def test_identical_texts_stay_on_one_side():
    refs = [Reference(group_id=f"g{i}", question="q", text="No acute cardiopulmonary abnormality.")
            for i in range(30)] + _refs(10)
    splits = assign_splits(refs, 0.5, seed=1)
    assert len({splits[i] for i in range(30)}) == 1


def test_grades_option_and_missing_synonyms():
    gs = build_grade_examples(_refs(8), None, GradeOptions(grades=(1, 3, 4)))
    assert {e.grade for e in gs.examples} == {1, 3, 4}
    with pytest.raises(ValueError, match="synonym"):
        build_grade_examples(_refs(8), None, GradeOptions())


def _sample(i: int, answer: str, rationale: str = "") -> VQASample:
    return VQASample(images=(ImageRef(path=f"img{i}.png", root="/tmp", sha256=f"{i:064x}"),),
                     question="What is shown?", options=("pneumonia", "normal", "effusion"), answer=answer,
                     rationale=rationale, subject_id=f"p{i}")


@pytest.mark.parametrize(("image_share", "rationale_share", "form"),
                         [(0.0, 0.0, "wrong option"), (1.0, 0.0, "other image"), (0.0, 1.0, "other rationale")])
def test_vqa_samples_grade4_forms_and_rationale_is_perturbed(image_share, rationale_share, form):
    samples = [_sample(i, ["pneumonia", "normal"][i % 2], f"The film shows {['pneumonia', 'normal'][i % 2]} {i}.")
               for i in range(10)]
    opts = GradeOptions(held_out_fraction=0, other_image_share=image_share, other_rationale_share=rationale_share,
                        answer_only_share=0)
    gs = build_grade_examples(from_samples(samples), syn, opts)
    rationales = {s.rationale: s for s in samples}
    grade4 = [e for e in gs.examples if e.grade == 4]
    assert len(grade4) == len(samples)
    for e in gs.examples:
        sample = samples[int(e.group_id.split(":p")[1])]
        assert "A. pneumonia" in e.question and e.image == sample.images[0]
        if e.grade in (2, 3):
            assert e.answer == sample.answer and e.rationale != sample.rationale
        if e.grade != 4:
            continue
        donor = rationales.get(e.rationale)
        assert donor is not None and donor is not sample
        if form == "wrong option":
            assert e.answer in sample.options and e.answer != sample.answer
        elif form == "other image":  # written for another image whose answer differs: only the image tells
            assert (e.answer, e.rationale) == (donor.answer, donor.rationale) and donor.answer != sample.answer
        else:  # the right answer, argued for by a rationale of the other answer
            assert e.answer == sample.answer and donor.answer != sample.answer


def test_answer_only_examples_grade_the_answer_alone():
    """answer_only_share: grades 1 and 4 written as a policy answering with the option writes them; never a
    right answer without its rationale graded down; 0 builds every example with its rationale."""
    samples = [_sample(i, ["pneumonia", "normal"][i % 2], f"The film shows {['pneumonia', 'normal'][i % 2]} {i}.")
               for i in range(40)]
    refs = from_samples(samples)
    base = build_grade_examples(refs, syn, GradeOptions(held_out_fraction=0, answer_only_share=0))
    assert all(e.rationale for e in base.examples)
    opts = GradeOptions(held_out_fraction=0, answer_only_share=0.5, other_rationale_share=0.5)
    gs = build_grade_examples(refs, syn, opts)
    alone = [e for e in gs.examples if not e.rationale]
    assert {e.grade for e in alone} == {1, 4} and len(gs.examples) == len(base.examples)
    assert 10 < len(alone) < 40  # about half of the 40 grade-1 and the wrong-answer grade-4 examples
    for e in alone:
        right = samples[int(e.group_id.split(":p")[1])].answer
        assert (e.answer == right) == (e.grade == 1) and e.target == GRADE_TARGETS[e.grade]
    # a grade-4 example that keeps the right answer beside another image's rationale keeps its rationale
    assert any(e.grade == 4 and e.rationale and e.answer == samples[int(e.group_id.split(":p")[1])].answer
               for e in gs.examples)


def test_grade4_shares_must_fit_in_one():
    with pytest.raises(ValueError, match="at most 1"):
        GradeOptions(other_image_share=0.7, other_rationale_share=0.5)


IU_XML = """<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="CXR{n}"/><MedlineCitation><Article>
<Abstract><AbstractText Label="INDICATION">{ind}</AbstractText><AbstractText Label="FINDINGS">{f}</AbstractText>
<AbstractText Label="IMPRESSION">{imp}</AbstractText></Abstract></Article></MedlineCitation>
<MeSH><major>{mesh}</major></MeSH></eCitation>"""


def _tgz(tmp_path, reports):
    path = tmp_path / "reports.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for n, (f, imp, mesh) in enumerate(reports, 1):
            blob = IU_XML.format(n=n, ind="Cough", f=f, imp=imp, mesh=mesh).encode()
            info = tarfile.TarInfo(f"ecgen-radiology/{n}.xml")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def test_iu_reader_from_tgz(tmp_path):
    path = _tgz(tmp_path, [("Heart normal.", "No acute disease.", "normal"),
                           ("", "", "normal"),
                           ("Large left effusion.", "Effusion.", "Pleural Effusion/left/large")])
    refs, skipped = read_iu_xray(path)
    assert skipped == 1 and [r.group_id for r in refs] == ["iu:CXR1", "iu:CXR3"]
    assert refs[1].text == "Findings: Large left effusion. Impression: Effusion."
    assert "Indication: Cough." in refs[1].question and "MeSH: Pleural Effusion/left/large" in refs[1].question
    assert refs[1].findings == ("pleural effusion",)
    assert parse_iu_report(IU_XML.format(n=9, ind="", f="", imp="Clear.", mesh="x")).text == "Impression: Clear."
    # MeSH "No Indexing": the study was not labelled, its findings are unknown (not a finding)
    assert parse_iu_report(IU_XML.format(n=9, ind="", f="Clear.", imp="", mesh="No Indexing")).findings == \
        (UNLABELLED,)


def test_text_and_csv_readers(tmp_path):
    (tmp_path / "a.txt").write_text("First report.\n\nSecond report.\n")
    refs = read_text_lines(tmp_path / "a.txt", "Describe.")
    assert [r.text for r in refs] == ["First report.", "Second report."] and refs[0].group_id == "a:1"
    (tmp_path / "b.csv").write_text("id,find,imp,dx\n7,Clear lungs.,Normal.,normal\n8,,,\n")
    refs = read_csv(tmp_path / "b.csv", ["find", "imp"], id_column="id", findings_column="dx")
    assert len(refs) == 1 and refs[0].text == "Clear lungs. Normal." and refs[0].group_id == "b:7"
    with pytest.raises(ValueError, match="no column"):
        read_csv(tmp_path / "b.csv", ["nope"])


def test_real_iu_xray_reports(shared_data):
    refs, skipped = read_iu_xray(shared_data / "reports-iu-xray" / "NLMCXR_reports.tgz")
    assert len(refs) + skipped == 3955
    assert len(refs) > 3800 and all(r.text for r in refs)
    gs = build_grade_examples(refs[:300], syn, GradeOptions(grades=(1, 3, 4)))
    assert not {e.group_id for e in gs.split("train")} & {e.group_id for e in gs.split("test")}


def test_grade_set_from_templated_vqa_samples_has_a_held_out_split():
    """Class-name answers repeat across subjects; the split still holds out whole subjects."""
    from medgr2_reward.grades import assign_splits
    from medgr2_reward.readers import from_samples

    from medgr2.testing import make_sample

    samples = [make_sample(f"What is shown? ({i})", ("normal", "pneumonia"), ("normal", "pneumonia")[i % 2],
                           image=f"img/{i}.png", subject_id=f"p{i // 2}", rationale="The image shows it.")
               for i in range(200)]
    refs = from_samples(samples)
    splits = assign_splits(refs, 0.2, seed=0)
    held = [i for i, s in splits.items() if s == "test"]
    assert 20 <= len(held) <= 60
    by_subject = {}
    for i, s in splits.items():
        by_subject.setdefault(refs[i].group_id, set()).add(s)
    assert all(len(v) == 1 for v in by_subject.values())
