"""How many of a run of items fit a budget, when only a costly measure says: pure.

The project files that fit the context budget are counted by rendering the prompt with
the first k of them (the prompt's wrapper around each file costs tokens too, so the
files' own sizes do not tell). A render costs time in proportion to k, and all of a
request's renders share one template time limit (2 s), so the search asks for few
costs, and none twice: it guesses where a cost that grows about linearly with k crosses
the budget (between the two costs known on either side), looks at the guess's
neighbour across the line when the guess's cost is within an average item of the
budget, and halves the span instead when a guess gained little (at worst about twice a
plain halving's count). On 10,000 tiny files it asks for 4 costs (0, all, the answer
and the one past it) where a plain halving asked for 16; on 5,000 files of mixed sizes,
5-7 for 15, over prefixes less than half as long in all.
"""

from __future__ import annotations

from collections.abc import Callable


def largest_fitting(cost: Callable[[int], int], n: int, budget: int) -> tuple[int, int]:
    """(k, cost(k)) for the largest k in 0..n with cost(k) <= budget, `cost` being
    non-decreasing in k; (0, cost(0)) when even none fits. Each cost is asked once."""
    known: dict[int, int] = {}

    def at(k: int) -> int:
        if k not in known:
            known[k] = cost(k)
        return known[k]

    lo, hi = 0, n
    if at(lo) > budget or n == 0:
        return lo, at(lo)
    if at(hi) <= budget:
        return hi, at(hi)
    # cost(lo) <= budget < cost(hi), lo < hi: the answer is in lo..hi-1
    halve = False
    while hi - lo > 1:
        span = hi - lo
        if halve or at(hi) == at(lo):
            guess = (lo + hi) // 2
        else:
            guess = lo + (budget - at(lo)) * span // (at(hi) - at(lo))
            guess = min(max(guess, lo + 1), hi - 1)
        rise = at(hi) - at(lo)  # over `span` items
        lo, hi = (guess, hi) if at(guess) <= budget else (lo, guess)
        if not halve and hi - lo > 1 and abs(at(guess) - budget) * span <= rise:
            # within an average item of the line: its neighbour across it is the end
            # where the cost is near linear
            side = lo + 1 if guess == lo else hi - 1
            lo, hi = (side, hi) if at(side) <= budget else (lo, side)
        halve = not halve and (hi - lo) * 2 > span  # little gained: halve next
    return lo, at(lo)
