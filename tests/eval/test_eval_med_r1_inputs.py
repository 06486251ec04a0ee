"""Med-R1's own records: options written ``A)CT, B)MRI`` and truths ``<answer> C </answer>``.

The problems below are in the form of Med-R1's ``Splits/*/test/*.json`` (Yuxiang-Lai117/Med-R1
at 88d76c7); the result file is laid out as ``src/eval_vqa/test_qwen2_5vl_vqa_nothink.py``
writes it.
"""

from __future__ import annotations

import json

import pytest

from medgr2_eval.parsing import parse_options
from medgr2_eval.prediction_files import read_predictions, score_predictions

NOTHINK = " Provide the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags."
THINK = (
    " Think through the question step by step in <think>...</think> tags. Then provide the correct "
    "single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags."
)
TASK = (
    " Your task: 1. Provide the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> "
    "tags. 2. No extra information or text outside of this tag."
)


@pytest.mark.parametrize(
    "problem,expected",
    [
        (
            "What imaging technique is utilized to capture this picture? A)X-ray, B)MRI, C)Echocardiogram, "
            "D)Mammography",
            ("X-ray", "MRI", "Echocardiogram", "Mammography"),
        ),
        (  # "(EEG)" and "(ECG)" hold "G)" inside an option: not a marker
            "What imaging technique was employed to acquire this image? A)Ultrasound, B)Electrocardiogram "
            "(ECG), C)Fundus imaging, D)PET scan",
            ("Ultrasound", "Electrocardiogram (ECG)", "Fundus imaging", "PET scan"),
        ),
        (  # an option ending in "." before the comma
            "What is the diagnosis? A)Chronic obstructive pulmonary disease (COPD), B)Lung cancer, "
            "C)Viral_Pneumonia., D)Tuberculosis",
            ("Chronic obstructive pulmonary disease (COPD)", "Lung cancer", "Viral_Pneumonia.",
             "Tuberculosis"),
        ),
        (  # "(MH)" ends in "H)"
            "What is the specific abnormality shown in this image? A)Age-related macular degeneration (AMD), "
            "B)Macular Hole (MH), C)Cataracts, D)Retinal detachment",
            ("Age-related macular degeneration (AMD)", "Macular Hole (MH)", "Cataracts",
             "Retinal detachment"),
        ),
        ("Is there a lesion? A)yes, B)no", ("yes", "no")),  # two options
        ("Which grade? A)Grade 1, B)Grade 2, C)Grade 3", ("Grade 1", "Grade 2", "Grade 3")),
        (  # sentences inside an option
            "What abnormality is shown? A)The image shows a normal blood vessel pattern., "
            "B)This is a normal oct image., C)Drusen are visible.",
            (
                "The image shows a normal blood vessel pattern.",
                "This is a normal oct image.",
                "Drusen are visible.",
            ),
        ),
        ("What organ? A)H&E stained tissue, B)Liver", ("H&E stained tissue", "Liver")),
    ],
)
@pytest.mark.parametrize("template", ["", NOTHINK, THINK, TASK])
def test_med_r1_option_lists_with_and_without_its_prompt_templates(problem, expected, template):
    assert parse_options(problem + template) == expected


def _results_file(tmp_path):
    rows = [  # (problem, truth letter, model output)
        ("What modality is used? A)MRI, B)CT scan, C)X-ray", "C", "<think>ribs</think><answer>C</answer>"),
        ("What modality is used? A)MRI, B)CT scan, C)X-ray", "A", "<answer> B </answer>"),
        ("Is there a lesion? A)yes, B)no", "B", "<answer>no</answer>"),  # a word, not the letter
        ("Is there a lesion? A)yes, B)no", "A", "A"),  # no tag and no "answer": compared whole
    ]
    results = [
        {
            "question": {"image": "Images/x.png", "problem": q, "solution": f"<answer> {g} </answer>"},
            "ground_truth": f"<answer> {g} </answer>",
            "model_output": out,
            "extracted_answer": None,
        }
        for q, g, out in rows
    ]
    path = tmp_path / "test_CT_results.json"
    path.write_text(json.dumps({"accuracy": 50.0, "results": results}, indent=2))
    return path


def test_med_r1_result_file_reads_as_predictions(tmp_path):
    preds = read_predictions(_results_file(tmp_path))
    assert [p.gt_answer for p in preds] == ["X-ray", "MRI", "no", "yes"]  # tags -> option texts
    assert preds[0].question.endswith("C)X-ray") and preds[0].model_answer.endswith("<answer>C</answer>")


def test_med_r1_result_file_scores_like_med_r1_and_has_options(tmp_path):
    preds = read_predictions(_results_file(tmp_path))
    report = score_predictions(preds, "med-r1", bootstrap=0)
    assert report.meta["n_without_options"] == 0 and report.meta["n_gt_not_an_option"] == 0
    o = report.overall
    assert (o.n, o.correct, o.invalid) == (4, 2, 1)  # Med-R1's script: 2 of 4 right ("no" is no letter)
    medgr2 = score_predictions(preds, "medgr2", bootstrap=0).overall
    assert (medgr2.correct, medgr2.invalid) == (0, 4)  # tags and letters are no option texts


def test_med_r1_training_records_read_with_their_own_truth(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(
        json.dumps(
            [
                {
                    "image": "x.png",
                    "problem": "Which? A)CT, B)MRI",
                    "solution": "<answer> B </answer>",
                    "model_output": "B",
                }
            ]
        )
    )
    (p,) = read_predictions(path)
    assert (p.question, p.gt_answer, p.model_answer) == ("Which? A)CT, B)MRI", "MRI", "B")
