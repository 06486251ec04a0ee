"""threshold, top_k and rand_k: decisions, reasons, scores, option validation and determinism."""

from __future__ import annotations

import pytest
from filters_helpers import ctx_fixture, freg_fixture, make_sample  # noqa: F401 (fixtures)

from medgr2.interfaces import Filter, StageContext
from medgr2.registry import OptionsError

REWARDS = [7.5, 5.0, 5.0001, -6.0, 9.0, 5.0]


def _samples(rewards=REWARDS):
    return [
        make_sample(f"What abnormality is visible in image number {i}?", reward=r)
        for i, r in enumerate(rewards)
    ]


@pytest.mark.parametrize(
    ("tau", "keep", "first_reason"),
    [
        (5.0, [True, False, True, False, True, False], "above_threshold: reward 7.500 > tau 5"),
        (8.0, [False, False, False, False, True, False], "below_threshold: reward 7.500 <= tau 8"),
        (-6.0, [True, True, True, False, True, True], "above_threshold: reward 7.500 > tau -6"),
    ],
)
def test_threshold_keeps_strictly_above_tau(freg, ctx, tau, keep, first_reason):
    flt = freg.create("filter", "threshold", {"tau": tau})
    assert isinstance(flt, Filter)
    samples = _samples()
    out = flt.apply(samples, [], ctx)
    assert [d.keep for d in out] == keep
    assert [d.sample_id for d in out] == [s.id for s in samples]
    assert [d.score for d in out] == REWARDS
    assert out[0].reason == first_reason
    assert all(d.filter == "threshold" for d in out)


def test_threshold_unscored_sample_is_a_clear_error(freg, ctx):
    samples = [
        make_sample("Is there an effusion on this film?", reward=6.0),
        make_sample("Which organ is shown?"),
    ]
    with pytest.raises(ValueError, match=r"has no reward .*medgr2 score"):
        freg.create("filter", "threshold", {}).apply(samples, [], ctx)


@pytest.mark.parametrize(
    ("options", "keep"),
    [
        ({"k": 2}, [True, False, False, False, True, False]),
        ({"k": 3}, [True, False, True, False, True, False]),
        # ties at 5.0 (indices 1 and 5): the earlier one ranks first
        ({"k": 4}, [True, True, True, False, True, False]),
        ({"k": 0}, [False] * 6),
        ({"k": 99}, [True] * 6),
        ({"fraction": 0.5}, [True, False, True, False, True, False]),
        ({"fraction": 1.0}, [True] * 6),
    ],
)
def test_top_k_table(freg, ctx, options, keep):
    out = freg.create("filter", "top_k", options).apply(_samples(), [], ctx)
    assert [d.keep for d in out] == keep
    assert all(d.reason.startswith("in_top_k: rank" if d.keep else "outside_top_k: rank") for d in out)


def test_top_k_reason_names_rank_and_is_stable_across_runs(freg, ctx):
    flt = freg.create("filter", "top_k", {"k": 1})
    a, b = flt.apply(_samples(), [], ctx), flt.apply(_samples(), [], ctx)
    assert a == b
    assert a[4].reason == "in_top_k: rank 1 of 6 by reward 9.000 (k=1)"
    assert a[5].reason == "outside_top_k: rank 5 of 6 by reward 5.000 (k=1)"


@pytest.mark.parametrize("name", ["top_k", "rand_k"])
@pytest.mark.parametrize("options", [{}, {"k": 3, "fraction": 0.5}, {"k": -1}, {"fraction": 0}, {"kk": 3}])
def test_count_options_are_validated(freg, name, options):
    with pytest.raises(OptionsError):
        freg.create("filter", name, options)


def test_rand_k_is_deterministic_by_seed_and_picks_k(freg, ctx):
    samples = [make_sample(f"Question {i} about this chest radiograph?") for i in range(40)]
    picks = {}
    for seed in (1, 2):
        runs = [
            freg.create("filter", "rand_k", {"k": 10, "seed": seed}).apply(samples, [], ctx) for _ in range(2)
        ]
        assert runs[0] == runs[1]
        picks[seed] = [d.keep for d in runs[0]]
        assert sum(picks[seed]) == 10
        assert runs[0][0].reason.endswith(f"random draw of 10 of 40 (seed {seed})")
    assert picks[1] != picks[2]
    # the scores are the rewards when present, None otherwise (rand_k needs no reward)
    assert all(d.score is None for d in runs[0])


def test_rand_k_match_tau_draws_as_many_as_the_threshold_keeps(freg, ctx):
    samples = _samples()
    flt = freg.create("filter", "rand_k", {"match_tau": 5.0, "seed": 3})
    out = flt.apply(samples, [], ctx)
    n_threshold = sum(
        d.keep for d in freg.create("filter", "threshold", {"tau": 5.0}).apply(samples, [], ctx)
    )
    assert sum(d.keep for d in out) == n_threshold == 3
    assert out[0].reason.endswith("(seed 3, k = samples with reward > 5)")
    with pytest.raises(OptionsError):
        freg.create("filter", "rand_k", {"match_tau": 5.0, "k": 2})


def test_rand_k_without_seed_follows_run_seed_and_cycle(freg, tmp_path):
    samples = [
        make_sample(f"Question {i} about this fundus photograph?", reward=float(i % 10)) for i in range(30)
    ]
    flt = freg.create("filter", "rand_k", {"fraction": 0.5})

    def draw(seed, cycle):
        out = flt.apply(samples, [], StageContext(work_dir=tmp_path, seed=seed, cycle=cycle))
        return tuple(d.keep for d in out)

    assert draw(0, 1) == draw(0, 1)
    assert sum(draw(0, 1)) == 15
    assert len({draw(0, 1), draw(0, 2), draw(1, 1)}) == 3
