"""The four-grade reward set D_grade (paper: multi-grade supervision).

From each reference: grade 1 the original (→ 10), grade 2 a WordNet-synonym perturbation (→ 6),
grade 3 random phrase deletions (→ 0), grade 4 an irrelevant answer (→ −6): the text of another
study with *different* findings (or, for a share, of another modality). For VQA references grade 4
takes one of three forms (shares in :class:`~medgr2_reward.options.GradeOptions`):

* *another image's answer*: the answer and rationale written for another image asked the same
  question, whose answer differs. The text reads well; only the image shows it is wrong, so an
  image-aware R_φ has to look (image-grounded negatives);
* *another image's rationale*: the right answer beside the rationale of such an image, which
  argues for something else;
* *a wrong option* with another sample's rationale.

Splits are drawn per connected group: references that share a group id or an identical text are
held together, so no text appears on both sides; grade-4 donors come from the same side.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from medgr2.data import GradedExample, stable_hash
from medgr2_reward.options import GRADE_TARGETS, GradeOptions
from medgr2_reward.perturb import delete_phrases, synonym_perturb
from medgr2_reward.readers import UNLABELLED, Reference

Synonyms = Callable[[str], Sequence[str]]


@dataclass
class GradeSet:
    """Graded examples, plus the counts of what could not be built and why."""

    examples: list[GradedExample] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def split(self, name: str) -> list[GradedExample]:
        """The examples of one split (``train`` or ``test``)."""
        return [e for e in self.examples if e.split == name]

    def counts(self) -> dict[str, int]:
        """Examples per ``split/grade``."""
        c = Counter(f"{e.split}/grade{e.grade}" for e in self.examples)
        return dict(sorted(c.items()))


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def assign_splits(refs: Sequence[Reference], held_out_fraction: float, seed: int) -> dict[int, str]:
    """Index of each reference → ``train`` or ``test``, drawn per connected component of
    (group id, normalised text), so neither a study nor a text is on both sides.

    References made from VQA samples are joined by group (subject or image) only: their answers
    are class names with templated rationales, repeated by design, and joining on them would put
    nearly every sample in one component (and the held-out split would come out empty)."""
    parent = list(range(len(refs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, r in enumerate(refs):
        keys = [f"g:{r.group_id}"]
        if r.source != "samples":
            keys.append(f"t:{_norm(r.text)} {_norm(r.rationale)}")
        for key in keys:
            j = first.setdefault(key, i)
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    out = {}
    for i in range(len(refs)):
        root = refs[find(i)]
        u = int(stable_hash(seed, root.group_id, root.text), 16) / 16 ** 16
        out[i] = "test" if u < held_out_fraction else "train"
    return out


class _Donors:
    """Random donors for grade 4: another group, different text and, when the reference's findings
    are known, known findings disjoint from them (an unlabelled report may well say the same)."""

    def __init__(self, refs: Sequence[Reference]):
        self.refs = list(refs)
        self.by_modality: dict[str, list[int]] = defaultdict(list)
        self.by_answer: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, r in enumerate(self.refs):
            self.by_modality[r.modality.value].append(i)
            if r.options:
                self.by_answer[_stem(r.question), r.text].append(i)

    def pick_other_image(self, ref: Reference, rng: random.Random) -> Reference | None:
        """A reference of another image asked the same question, whose answer is another of
        ``ref``'s options (so its answer and rationale read as a valid reply to ``ref``)."""
        stem = _stem(ref.question)
        pool = sorted(i for option in set(ref.options) - {ref.text} for i in self.by_answer.get((stem, option), ())
                      if self.refs[i].group_id != ref.group_id)  # in reference order: the same draw as a scan
        return self.refs[rng.choice(pool)] if pool else None

    def pick(self, ref: Reference, rng: random.Random, other_modality: bool, tries: int = 64) -> Reference | None:
        pool = list(range(len(self.refs)))
        if other_modality:
            others = [i for m, idx in self.by_modality.items() if m != ref.modality.value for i in idx]
            pool = others or pool
        for _ in range(tries):
            d = self.refs[rng.choice(pool)]
            if d.group_id == ref.group_id or _norm(d.text) == _norm(ref.text):
                continue
            if _known(ref.findings) and (not _known(d.findings) or set(ref.findings) & set(d.findings)):
                continue  # "different findings" needs the donor's to be known, and disjoint
            return d
        return None


def _stem(question: str) -> str:
    """The question without its options block (the first line), normalised."""
    return _norm(question.split("\n", 1)[0])


def _known(findings: Sequence[str]) -> bool:
    return bool(findings) and tuple(findings) != (UNLABELLED,)


def _perturb_target(ref: Reference) -> str:
    return "rationale" if ref.rationale.strip() else "text"


def build_grade_examples(refs: Sequence[Reference], synonyms: Synonyms | None,
                         options: GradeOptions | None = None) -> GradeSet:
    """Build graded examples from references (deterministic for a seed, whatever the input order).

    Args:
        refs: The correct references.
        synonyms: ``word -> synonyms`` (e.g. :class:`~medgr2_reward.perturb.SynonymSource` over
            WordNet); required when grade 2 is built.
        options: Rates, seed, held-out share and which grades to build.
    """
    opts = options or GradeOptions()
    bad = [g for g in opts.grades if g not in GRADE_TARGETS]
    if bad:
        raise ValueError(f"unknown grade(s) {bad}: grades are 1 (original) to 4 (irrelevant)")
    if 2 in opts.grades and synonyms is None:
        raise ValueError("grade 2 needs a synonym source (WordNet); pass synonyms= or drop grade 2")
    out = GradeSet()
    unique: dict[tuple[str, str, str], Reference] = {}
    for r in refs:
        unique.setdefault((r.group_id, r.text, r.rationale), r)
    if len(unique) < len(refs):
        out.skipped["duplicate"] = len(refs) - len(unique)
    refs = sorted(unique.values(), key=lambda r: (r.group_id, r.text, r.rationale))
    splits = assign_splits(refs, opts.held_out_fraction, opts.seed)
    by_split: dict[str, list[Reference]] = defaultdict(list)
    for i, r in enumerate(refs):
        by_split[splits[i]].append(r)
    for split, members in sorted(by_split.items()):
        donors = _Donors(members)
        for ref in members:
            rng = random.Random(stable_hash(opts.seed, ref.group_id, ref.text, ref.rationale))
            for grade in opts.grades:
                ex = _make(ref, grade, rng, synonyms, donors, opts, split)
                if ex is None:
                    out.skipped[f"grade{grade}"] += 1
                else:
                    out.examples.append(ex)
    return out


def _make(ref: Reference, grade: int, rng: random.Random, synonyms: Synonyms | None, donors: _Donors,
          opts: GradeOptions, split: str) -> GradedExample | None:
    ex = _graded(ref, grade, rng, synonyms, donors, opts, split)
    # answer alone (as a policy answering with the option writes it): kept only where the answer decides
    # the grade, i.e. the right answer (grade 1) or a wrong one (grade 4), never a right one with a bad rationale
    if (ex is not None and ref.options and opts.answer_only_share > 0 and grade in (1, 4)
            and (grade == 1) == (ex.answer == ref.text) and rng.random() < opts.answer_only_share):
        return ex.model_copy(update={"rationale": ""})
    return ex


def _graded(ref: Reference, grade: int, rng: random.Random, synonyms: Synonyms | None, donors: _Donors,
            opts: GradeOptions, split: str) -> GradedExample | None:
    answer, rationale = ref.text, ref.rationale
    where = _perturb_target(ref)
    if grade in (2, 3):
        source = rationale if where == "rationale" else answer
        if grade == 2:
            assert synonyms is not None
            changed = synonym_perturb(source, synonyms, rng, opts.synonym_rate)
        else:
            changed = delete_phrases(source, rng, opts.deletion_rate, opts.max_span)
        if changed is None:
            return None
        if where == "rationale":
            rationale = changed
        else:
            answer = changed
    elif grade == 4:
        if ref.options:
            form = rng.random()
            twin = None
            if form < opts.other_image_share + opts.other_rationale_share:
                twin = donors.pick_other_image(ref, rng)
            if twin is not None:  # another image's answer (and rationale), or only its rationale
                answer = twin.text if form < opts.other_image_share else answer
                return _example(ref, grade, split, answer, twin.rationale)
        other = opts.other_modality_share > 0 and rng.random() < opts.other_modality_share
        donor = donors.pick(ref, rng, other)
        if ref.options:
            wrong = [o for o in ref.options if o != ref.text]
            if not wrong:
                return None
            answer = rng.choice(wrong)
            rationale = donor.rationale if donor is not None else ""
        elif donor is None:
            return None
        else:
            answer, rationale = donor.text, donor.rationale
    return _example(ref, grade, split, answer, rationale)


def _example(ref: Reference, grade: int, split: str, answer: str, rationale: str) -> GradedExample:
    return GradedExample(image=ref.image, question=ref.question, answer=answer, rationale=rationale,
                         target=GRADE_TARGETS[grade], grade=grade, group_id=ref.group_id,
                         split=split, origin="grade")  # type: ignore[arg-type]
