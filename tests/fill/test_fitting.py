"""The count of project files that fit the budget is the one a full search finds, with
few and no repeated renders (fill/fitting.py; each cost is a prompt render)."""

from __future__ import annotations

import random
from collections.abc import Callable
from itertools import accumulate

import pytest

from kznllm_py.fill.fitting import largest_fitting


def counted(cost: Callable[[int], int]) -> tuple[Callable[[int], int], list[int]]:
    asked: list[int] = []

    def measure(k: int) -> int:
        asked.append(k)
        return cost(k)

    return measure, asked


def brute(cost: Callable[[int], int], n: int, budget: int) -> int:
    return max([k for k in range(n + 1) if cost(k) <= budget], default=0)


def test_every_non_decreasing_cost_gets_the_largest_count_that_fits_each_asked_once():
    rng = random.Random(7)
    for _ in range(3000):
        n = rng.choice([0, 1, 2, 3, 5, 10, 50, 300])
        steps = [rng.choice([0, 0, 1, 2, 7, 40, rng.randrange(1000)]) for _ in range(n)]
        costs = [0, *accumulate(steps)]
        budget = rng.randrange(-2, costs[-1] + 3)
        measure, asked = counted(costs.__getitem__)
        k, cost = largest_fitting(measure, n, budget)
        assert k == brute(costs.__getitem__, n, budget), (costs, budget)
        assert cost == costs[k]
        assert len(asked) == len(set(asked)), asked  # no render twice
        # never worse than twice a halving's count (with the two ends)
        assert len(asked) <= 2 * max(n, 1).bit_length() + 3, (len(asked), n)


def test_ten_thousand_files_of_one_size_take_four_renders():
    # the test_security_cli case: a wrapper of 6.5 tokens a file, 19,655 left for them
    measure, asked = counted(lambda k: 13 * k // 2)
    assert largest_fitting(measure, 10_000, 19_655) == (3023, 19_649)
    assert sorted(asked) == [0, 3023, 3024, 10_000]


@pytest.mark.parametrize(
    ("budget", "expected"),
    [(-1, (0, 0)), (0, (0, 0)), (4, (0, 0)), (5, (1, 5)), (10**9, (100, 500))],
)
def test_the_ends_none_fits_and_all_fit(budget: int, expected: tuple[int, int]):
    measure, asked = counted(lambda k: 5 * k)
    assert largest_fitting(measure, 100, budget) == expected
    assert len(asked) <= 4


def halving(cost: Callable[[int], int], n: int, budget: int) -> list[int]:
    """The costs a plain halving asks for (what fill/job.py did)."""
    asked = [0, n]
    lo, hi = 0, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        asked.append(mid)
        lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid)
    return asked


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("share", [3, 2])
def test_files_of_mixed_sizes_take_fewer_and_shorter_renders_than_halving(seed: int, share: int):
    rng = random.Random(seed)
    sizes = [rng.choice([3, 5, 8, 400, 2000]) for _ in range(5000)]
    costs = [0, *accumulate(s + 6 for s in sizes)]  # each file's text and its wrapper
    budget = costs[-1] // share
    measure, asked = counted(costs.__getitem__)
    assert largest_fitting(measure, 5000, budget)[0] == brute(costs.__getitem__, 5000, budget)
    plain = halving(costs.__getitem__, 5000, budget)
    assert len(asked) < len(plain)
    assert sum(asked) < sum(plain)  # a render's time goes with the files it holds
