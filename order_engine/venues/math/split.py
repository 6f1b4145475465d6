"""Best split of one ExactIn order between two venues.

Given output functions `first(a)` and `second(b)` (atoms out for atoms in), find the integer `a`
that maximises `first(a) + second(A - a)`. Both outputs are concave in exact arithmetic
(constant product) or piecewise linear and concave (DLMM bins, whose price only worsens as the
walk goes on), so the sum is unimodal and the optimum is where the marginal outputs are equal
(docs/venues.md). Rounding to whole atoms adds a few atoms of noise to that shape, so:

1. the search brackets the optimum by ternary search, comparing the sum at two interior points
   (the sign of the discrete marginal between them says on which side the optimum lies);
2. once the bracket is `refine_window` atoms wide, every amount in it (widened by
   `refine_window` on each side) is evaluated, which absorbs the rounding noise;
3. both single-venue allocations are always candidates, so a split is never worse than the best
   single venue; small orders (at most `exhaustive_up_to` feasible allocations) are searched
   exhaustively, which makes their routing regret exactly zero.

Output functions may return `None` for an amount the venue cannot fill (out of liquidity). The
amount a venue can fill is assumed monotone: if it can fill `a` atoms it can fill fewer.
`venue_output` adapts a quoting function that raises `VenueMathError` to that contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from order_engine.venues.math import InsufficientLiquidity, VenueMathError

OutputFunction = Callable[[int], int | None]

DEFAULT_REFINE_WINDOW = 32
DEFAULT_EXHAUSTIVE_UP_TO = 256
BPS = 10_000


@dataclass(frozen=True)
class Split:
    """An allocation of `amount_first + amount_second` input atoms and its total output."""

    amount_first: int
    amount_second: int
    amount_out: int

    @property
    def uses_both_venues(self) -> bool:
        """True when both venues get a non-zero share of the input."""
        return self.amount_first > 0 and self.amount_second > 0


def venue_output(quote: Callable[[int], int]) -> OutputFunction:
    """Adapt `quote(amount_in) -> amount_out` to an output function for the search.

    Zero input gives zero output without asking the venue; an input the venue refuses because it
    cannot fill it (`InsufficientLiquidity`) gives `None`; an input too small to buy an atom
    (any other `VenueMathError`) gives 0.
    """

    def output(amount_in: int) -> int | None:
        if amount_in == 0:
            return 0
        try:
            return quote(amount_in)
        except InsufficientLiquidity:
            return None
        except VenueMathError:
            return 0

    return output


def best_single_venue(
    first: OutputFunction, second: OutputFunction, amount_in: int
) -> Split | None:
    """The better of sending everything to one venue (ties go to `first`); None if neither can."""
    options = []
    out_first, out_second = first(amount_in), second(amount_in)
    if out_first is not None:
        options.append(Split(amount_in, 0, out_first))
    if out_second is not None:
        options.append(Split(0, amount_in, out_second))
    # max() keeps the first of equal items, so a tie goes to `first`.
    return max(options, key=lambda option: option.amount_out, default=None)


def best_split(
    first: OutputFunction,
    second: OutputFunction,
    amount_in: int,
    *,
    refine_window: int = DEFAULT_REFINE_WINDOW,
    exhaustive_up_to: int = DEFAULT_EXHAUSTIVE_UP_TO,
) -> Split:
    """The allocation of `amount_in` that maximises total output (single venues included).

    Ties prefer a single venue, then `first`. Raises `InsufficientLiquidity` when no allocation
    can be filled.
    """
    if amount_in <= 0:
        raise ValueError("amount_in must be positive")
    objective = _Objective(first, second, amount_in)
    low, high = _feasible_range(first, second, amount_in)
    # Single venues first, so they win ties against a split of equal output.
    candidates = [amount_in, 0, low, high]
    if high - low + 1 <= exhaustive_up_to:
        candidates += range(low, high + 1)
    else:
        bracket_low, bracket_high = _ternary_bracket(objective, low, high, refine_window)
        candidates += range(
            max(low, bracket_low - refine_window), min(high, bracket_high + refine_window) + 1
        )
    return objective.best_of(candidates)


def improvement_bps(amount_out: int, baseline_out: int) -> Fraction:
    """How much more `amount_out` is than `baseline_out`, in exact basis points."""
    if baseline_out <= 0:
        raise ValueError("baseline output must be positive")
    return Fraction(amount_out - baseline_out, baseline_out) * BPS


def split_beats_single_venue(
    split: Split, single: Split | None, min_improvement_bps: int | Fraction
) -> bool:
    """True when routing through both venues pays more than `min_improvement_bps` over the best
    single venue: the extra transaction cost of a split must be worth it (docs/venues.md).

    A split that fills an order no single venue can fill always wins.
    """
    if not split.uses_both_venues:
        return False
    if single is None or single.amount_out == 0:
        return split.amount_out > 0
    return improvement_bps(split.amount_out, single.amount_out) > min_improvement_bps


def choose_allocation(
    first: OutputFunction,
    second: OutputFunction,
    amount_in: int,
    min_improvement_bps: int | Fraction,
    **search_options: int,
) -> Split:
    """The split when it beats the best single venue by more than the threshold, else that venue.

    Raises `InsufficientLiquidity` when no allocation can be filled.
    """
    split = best_split(first, second, amount_in, **search_options)
    single = best_single_venue(first, second, amount_in)
    if single is None or split_beats_single_venue(split, single, min_improvement_bps):
        return split
    return single


class _Objective:
    """`first(a) + second(A - a)` with memoised venue calls; None where either side can't fill."""

    def __init__(self, first: OutputFunction, second: OutputFunction, amount_in: int) -> None:
        self._first = first
        self._second = second
        self._amount_in = amount_in
        self._cache: dict[int, int | None] = {}

    def __call__(self, amount_first: int) -> int | None:
        if amount_first not in self._cache:
            out_first = self._first(amount_first)
            out_second = self._second(self._amount_in - amount_first)
            if out_first is None or out_second is None:
                self._cache[amount_first] = None
            else:
                self._cache[amount_first] = out_first + out_second
        return self._cache[amount_first]

    def feasible_total(self, amount_first: int) -> int:
        """The total at an allocation known to be fillable by both venues."""
        total = self(amount_first)
        if total is None:
            raise AssertionError(f"allocation {amount_first} was expected to be fillable")
        return total

    def best_of(self, amounts_first: list[int] | range) -> Split:
        best: Split | None = None
        for amount_first in amounts_first:
            total = self(amount_first)
            if total is not None and (best is None or total > best.amount_out):
                best = Split(amount_first, self._amount_in - amount_first, total)
        if best is None:
            raise InsufficientLiquidity("neither venue nor any split can fill this amount")
        return best


def _feasible_range(
    first: OutputFunction, second: OutputFunction, amount_in: int
) -> tuple[int, int]:
    """[low, high] of `amount_first` values both venues can fill; raises if it is empty."""
    high = _largest_fillable(first, amount_in)
    low = amount_in - _largest_fillable(second, amount_in)
    if low > high:
        raise InsufficientLiquidity("the two venues together cannot fill this amount")
    return low, high


def _largest_fillable(output: OutputFunction, amount_in: int) -> int:
    """Largest input in [0, amount_in] the venue can fill, by bisection on fillability."""
    if output(amount_in) is not None:
        return amount_in
    fillable, unfillable = 0, amount_in
    while unfillable - fillable > 1:
        middle = (fillable + unfillable) // 2
        if output(middle) is None:
            unfillable = middle
        else:
            fillable = middle
    return fillable


def _ternary_bracket(objective: _Objective, low: int, high: int, width: int) -> tuple[int, int]:
    """Shrink [low, high] around the maximum of a unimodal objective to `width` atoms or less.

    Comparing the objective at the two third-points is the sign of its discrete marginal over
    that span. A comparison that rounding noise gets wrong can only drop a part of the range
    whose best value is within that noise of the optimum, so the regret stays a few atoms, and
    the final scan of the bracket usually recovers even those.
    """
    width = max(width, 2)
    while high - low > width:
        third = (high - low) // 3
        left, right = low + third, high - third
        # Both points are fillable: the whole [low, high] range is.
        if objective.feasible_total(left) < objective.feasible_total(right):
            low = left
        else:
            high = right
    return low, high
