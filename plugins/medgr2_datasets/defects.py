"""The defect model of the ``labels`` generator: the ways LLM question generators fail, at known rates.

A clean ``labels`` sample is right by construction, so the generator alone cannot show what reward
filtering is for. With ``LabelsOptions.defects`` rates above 0 it spoils shares of its samples, each
in one of five ways that mirror how LLM generators fail, and records which in
``provenance.raw["defect"]`` so a report can measure how well R_phi and the filters find them:

``wrong_confusable``
    The answer is set to a *confusable* wrong class (melanoma for a nevus, MRI for CT, the
    neighbouring age band ...; see :data:`CONFUSABLE`), swapped into the options when absent, and
    the rationale argues for it, in the style of the sample it spoils (with the confident closing
    sentence :data:`SUPPORT` when that sample had one: ``LabelsOptions.closing_share``). The hardest
    kind: the text reads like a right answer; only the image shows it is wrong.
``contradicting_rationale``
    The answer stays right but the rationale states another option, then concludes the answer.
``unanswerable``
    The question asks about a finding or modality the image cannot show (organs of a CT slice
    asked of a dermoscopy image, a retinopathy grade of a chest X-ray ...; see :data:`PROBES`),
    with options from that other label space and an answer picked among them.
``bad_rationale``
    The answer stays right; the rationale is cut off mid-sentence or its words are scrambled.
``bad_options``
    The distractors come from an unrelated label space (``female`` as a modality), or one
    distractor is a near-copy of the answer (``possible pneumonia``).

Samples of the older ``label_noise`` option (a random wrong option, tag ``noisy``) are recorded
as ``label_noise``; every other sample as ``none`` whenever any rate is above 0 (with all rates
0 nothing is recorded, so the generator's output is unchanged). Kinds are drawn on disjoint
samples with a seeded RNG; a sample a kind cannot apply to (too few options ...) stays available
for the next kind. R_phi and the filters never read provenance (see ``tests/effect``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

from medgr2.data import DEFECT_CLEAN as CLEAN
from medgr2.data import DEFECT_KEY, Modality, QuestionType, VQASample, evolve, stable_hash
from medgr2_datasets.vocab import AGE_BANDS, FALLBACK_SPACES, HAM10000_CLASSES, SEX_VOCAB

LABEL_NOISE = "label_noise"
DEFECT_KINDS = ("wrong_confusable", "contradicting_rationale", "unanswerable", "bad_rationale", "bad_options")
"""The five defect kinds, in the order they are drawn."""

CONFUSABLE: dict[str, tuple[str, ...]] = {
    # modalities that look alike to a careless reader
    "ct": ("MRI", "X-ray"),
    "mri": ("CT",),
    "x-ray": ("CT",),
    "ultrasound": ("MRI", "CT"),
    "dermoscopy": ("microscopy",),
    "microscopy": ("dermoscopy",),
    "fundus photography": ("OCT",),
    "oct": ("fundus photography", "ultrasound"),
    # classes within one dataset
    "melanocytic nevus": ("melanoma", "benign keratosis-like lesion"),
    "melanoma": ("melanocytic nevus", "basal cell carcinoma"),
    "benign keratosis-like lesion": ("actinic keratosis or intraepithelial carcinoma", "melanoma"),
    "basal cell carcinoma": ("benign keratosis-like lesion", "melanoma"),
    "actinic keratosis or intraepithelial carcinoma": ("benign keratosis-like lesion",),
    "vascular lesion": ("melanocytic nevus",),
    "dermatofibroma": ("melanocytic nevus",),
    "benign breast lesion": ("malignant breast lesion",),
    "malignant breast lesion": ("benign breast lesion",),
    "normal breast tissue": ("benign breast lesion",),
    "normal": ("pneumonia",),
    "pneumonia": ("normal",),
    "covid-19 pneumonia": ("non-covid pneumonia",),
    "non-covid pneumonia": ("covid-19 pneumonia",),
    "no abnormal finding": ("non-covid pneumonia",),
    "male": ("female",),
    "female": ("male",),
    **{a.lower(): tuple(AGE_BANDS[j] for j in (i - 1, i + 1) if 0 <= j < len(AGE_BANDS))
       for i, a in enumerate(AGE_BANDS)},
}
"""Answer (lower case) -> wrong classes a generator plausibly confuses it with, most likely first.
Answers not listed fall back to the dataset's own options."""

SUPPORT = " Its appearance is typical of {wrong}, which rules out the other options."
"""The confident closing sentence: the ``labels`` generator ends a share of its rationales with it
(``closing_share``), and a ``wrong_confusable`` rationale keeps it, for the wrong answer, when the
sample it spoils had it. (Before wave 2's stop 26 every ``wrong_confusable`` rationale got it and no
clean one did, so the sentence alone gave the defect away: R_φ's fluency features found it.)"""

ORGANS = ("liver", "spleen", "left kidney", "heart", "urinary bladder", "pancreas", "stomach")
PROBES: tuple[tuple[Modality, str, QuestionType, str, tuple[str, ...], str], ...] = (
    (Modality.CT, "organs", QuestionType.ANATOMY_IDENTIFICATION,
     "Which of the following organs is visible in this CT slice?", ORGANS,
     "The organ segmentation of this CT slice contains the {answer}."),
    (Modality.DERMOSCOPY, "diagnosis", QuestionType.DISEASE_DIAGNOSIS,
     "What is the most likely diagnosis of the skin lesion in this dermoscopy image?",
     tuple(HAM10000_CLASSES.values()), "The dermoscopic pattern of this lesion is that of {answer}."),
    (Modality.FUNDUS, "grade", QuestionType.LESION_GRADING,
     "What grade of diabetic retinopathy does this fundus photograph show?",
     ("no retinopathy", "mild retinopathy", "moderate retinopathy", "severe retinopathy",
      "proliferative retinopathy"), "The retina shows {answer}."),
    (Modality.XRAY, "diagnosis", QuestionType.DISEASE_DIAGNOSIS,
     "Which finding does this chest X-ray show?",
     ("pneumonia", "pleural effusion", "cardiomegaly", "pneumothorax"), "The chest film shows {answer}."),
    (Modality.MRI, "diagnosis", QuestionType.DISEASE_DIAGNOSIS,
     "Which brain tumour type does this MRI scan show?",
     ("glioma", "meningioma", "pituitary tumour", "no tumour"), "The brain MRI shows {answer}."),
)
"""Questions an image of another modality cannot answer: (modality that could, fact kind, type,
question, option space, rationale). A probe is only asked of images of a different modality."""


def defect_of(sample: VQASample) -> str | None:
    """The defect kind recorded in ``sample``'s provenance (``None``: no defect model was active)."""
    return sample.provenance.raw.get(DEFECT_KEY)


def _mark(sample: VQASample, kind: str, **raw: str) -> dict[str, object]:
    return {"provenance": sample.provenance.model_copy(
        update={"raw": {**sample.provenance.raw, DEFECT_KEY: kind, **raw}})}


def _wrong_confusable(s: VQASample, rng: random.Random, rationales: Mapping[str, str]) -> VQASample | None:
    wrongs = [o for o in s.options if o != s.answer]
    if not wrongs:
        return None
    confusable = CONFUSABLE.get(s.answer.strip().lower(), ())
    lower = {o.strip().lower(): o for o in s.options}
    present = [lower[c.lower()] for c in confusable if c.lower() in lower and lower[c.lower()] != s.answer]
    options = list(s.options)
    if present:
        wrong = present[0]
    elif confusable:  # swap the most confusable class in for a distractor
        wrong = confusable[0]
        options[options.index(rng.choice(wrongs))] = wrong
    else:
        wrong = rng.choice(wrongs)
    kind = s.provenance.raw.get("kind", "diagnosis")
    closing = SUPPORT.format(wrong=wrong) if s.rationale.endswith(SUPPORT.format(wrong=s.answer)) else ""
    rationale = rationales.get(kind, rationales["diagnosis"]).format(
        answer=wrong, dataset=s.provenance.source_dataset) + closing
    return evolve(s, options=tuple(options), answer=wrong, rationale=rationale,
                  **_mark(s, "wrong_confusable", true_answer=s.answer))


def _contradicting(s: VQASample, rng: random.Random, rationales: Mapping[str, str]) -> VQASample | None:
    wrongs = [o for o in s.options if o != s.answer]
    if not wrongs:
        return None
    other = rng.choice(wrongs)
    kind = s.provenance.raw.get("kind", "diagnosis")
    rationale = rationales.get(kind, rationales["diagnosis"]).format(
        answer=other, dataset=s.provenance.source_dataset) + f" So the answer is {s.answer}."
    return evolve(s, rationale=rationale, **_mark(s, "contradicting_rationale"))


def _unanswerable(s: VQASample, rng: random.Random, rationales: Mapping[str, str]) -> VQASample | None:
    probes = [p for p in PROBES if p[0] is not s.modality]
    modality, kind, qtype, question, space, rationale = rng.choice(probes)
    options = rng.sample(space, min(len(s.options), len(space)))
    answer = rng.choice(options)
    return evolve(s, question=question, options=tuple(options), answer=answer, question_type=qtype,
                  rationale=rationale.format(answer=answer),
                  provenance=s.provenance.model_copy(update={
                      "template_hash": stable_hash(question),
                      "raw": {**s.provenance.raw, "kind": kind, DEFECT_KEY: "unanswerable",
                              "asks_about": modality.value}}))


def _bad_rationale(s: VQASample, rng: random.Random, rationales: Mapping[str, str]) -> VQASample | None:
    words = s.rationale.split()
    if len(words) < 4:
        return None
    if rng.random() < 0.5:  # truncated mid-sentence, before the answer is stated
        first = s.answer.split()[0].lower() if s.answer.split() else ""
        at = [i for i, w in enumerate(words) if w.strip(".,;:").lower() == first]
        cut = at[0] if at and at[0] >= 2 else max(2, len(words) // 2)
        text, how = " ".join(words[:cut]).rstrip(".,;:"), "truncated"
    else:
        shuffled = list(words)
        while shuffled == words:
            rng.shuffle(shuffled)
        text, how = " ".join(w.strip(".,;:").lower() for w in shuffled), "scrambled"
    return evolve(s, rationale=text, **_mark(s, "bad_rationale", how=how))


_SPACES = {
    "modality": FALLBACK_SPACES["modality"],
    "anatomy": (*FALLBACK_SPACES["body_part"], *FALLBACK_SPACES["site"], *ORGANS),
    "sex": SEX_VOCAB,
    "age": AGE_BANDS,
}
_GROUP = {"modality": "modality", "organs": "anatomy", "body_part": "anatomy", "site": "anatomy",
          "sex": "sex", "age": "age"}
"""Label spaces by group; ``bad_options`` draws implausible distractors from groups other than the
question's (diagnosis and grade questions belong to none)."""


def _bad_options(s: VQASample, rng: random.Random, rationales: Mapping[str, str]) -> VQASample | None:
    if len(s.options) < 2:
        return None
    options = list(s.options)
    wrong_idx = [i for i, o in enumerate(options) if o != s.answer]
    if rng.random() < 0.5:  # implausible: distractors from a label space that cannot answer the question
        group = _GROUP.get(s.provenance.raw.get("kind", ""), "")
        taken = {o.strip().lower() for o in options}
        pool = [x for x in dict.fromkeys(v for g, sp in _SPACES.items() if g != group for v in sp)
                if x.strip().lower() not in taken]
        for i, x in zip(wrong_idx, rng.sample(pool, len(wrong_idx))):
            options[i] = x
        how = "implausible"
    else:  # a distractor that repeats the answer
        options[rng.choice(wrong_idx)] = f"possible {s.answer}"
        how = "duplicated"
    return evolve(s, options=tuple(options), **_mark(s, "bad_options", how=how))


APPLY = {
    "wrong_confusable": _wrong_confusable,
    "contradicting_rationale": _contradicting,
    "unanswerable": _unanswerable,
    "bad_rationale": _bad_rationale,
    "bad_options": _bad_options,
}


def apply_defects(
    samples: Sequence[VQASample],
    rates: Mapping[str, float],
    seed: int,
    cycle: int,
    rationales: Mapping[str, str],
    *,
    record: bool,
) -> tuple[list[VQASample], dict[str, int]]:
    """Spoil ``round(rate × N)`` of ``samples`` per defect kind (disjoint; samples tagged ``noisy`` by
    ``label_noise`` are not drawn again) and record every sample's kind when ``record``.

    Returns the samples (input order) and the count per kind (``none`` for clean ones).
    """
    n = len(samples)
    out = list(samples)
    kinds: list[str] = [LABEL_NOISE if "noisy" in s.tags else CLEAN for s in samples]
    rng = random.Random(stable_hash(seed, cycle, "defects"))
    pool = [i for i in range(n) if kinds[i] == CLEAN]
    rng.shuffle(pool)
    for kind in DEFECT_KINDS:
        want = round(n * float(rates.get(kind, 0.0)))
        if want == 0:
            continue
        rest = []
        for i in pool:
            if want == 0:
                rest.append(i)
                continue
            own = random.Random(stable_hash(seed, cycle, kind, out[i].id))
            spoiled = APPLY[kind](out[i], own, rationales)
            if spoiled is None:
                rest.append(i)
            else:
                out[i], kinds[i], want = spoiled, kind, want - 1
        pool = rest
    if record:
        for i, (s, kind) in enumerate(zip(out, kinds)):
            if defect_of(s) is None:
                out[i] = s.model_copy(update=_mark(s, kind))
    return out, dict(Counter(kinds))
