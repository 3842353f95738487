"""The bounds of every number a user gives us: ``codi`` options, /codi/plan fields and planner config
values are checked here, against one table, with one message format (the field, the bound, the value).

A plan's cost grows with candidates x M x steps (joint chunks sampled per plan x guidance samples per
denoising step x denoising steps): :data:`PLAN_BUDGET` caps that product. The shipped planner
(8 x 64 x 12 = 6,144) plans in about 0.26 s on one core; the budget (about 5x that: 64 steps at the
shipped M and candidates, or M = 256 at 16 steps) still lets a study sweep M or the steps, and keeps
the time one request holds the single-threaded coordinator, and the /codi/stop queued behind it, to
about 1.5 s (the budget's 64-step plan took 1.0-1.4 s in the simulated graph,
experiments/stop_latency.py), and no request allocates more memory than a laptop has (M = 10^8 asked
for 716 GB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PLAN_BUDGET = 32_768     # candidates x M x steps per plan


class BoundsError(ValueError):
    """A value outside its bounds; the message names the field."""


@dataclass(frozen=True)
class Bound:
    low: float
    high: float
    whole: bool          # an integer
    what: str            # what the value is, for the message

    def describe(self) -> str:
        if self.whole:
            return f"a whole number in [{int(self.low)}, {int(self.high)}]"
        return f"a number in [{self.low:g}, {self.high:g}]"


BOUNDS: dict[str, Bound] = {
    "num_samples": Bound(2, 16_384, True, "M, guidance samples per denoising step"),
    "steps": Bound(1, 1_000, True, "denoising steps per plan"),
    "candidates": Bound(1, 1_024, True, "joint chunks sampled per plan"),
    "temperature": Bound(1e-9, 1e6, False, "lambda, cost units"),
    "seed": Bound(0, 2**32 - 1, True, "random seed"),
    "episodes": Bound(1, 100_000, True, "episodes"),
    "seconds": Bound(0.1, 3_600, False, "episode length, s"),
    "latency": Bound(0, 10, False, "injected planning latency, s"),
    "workers": Bound(1, 256, True, "worker processes"),
    "threads": Bound(1, 256, True, "torch threads"),
    "repeats": Bound(1, 100_000, True, "timed calls"),
    "check_episodes": Bound(0, 10_000, True, "episodes of the closed-loop check"),
}


def check(name: str, value, field: str | None = None):
    """``value`` if it is within ``BOUNDS[name]``; else BoundsError naming ``field`` (default ``name``)."""
    bound, field = BOUNDS[name], field or name
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BoundsError(f"{field}: {bound.what} must be {bound.describe()}, got {value!r}") from None
    if not (math.isfinite(number) and bound.low <= number <= bound.high) or (bound.whole and number != int(number)):
        raise BoundsError(f"{field}: {bound.what} must be {bound.describe()}, got {value!r}")
    return int(number) if bound.whole else number


def check_plan_work(candidates: int, num_samples: int, steps: int, field: str = "candidates x num_samples x steps"):
    """Refuse a plan whose candidates x M x steps exceeds :data:`PLAN_BUDGET`."""
    work = candidates * num_samples * steps
    if work > PLAN_BUDGET:
        raise BoundsError(f"{field}: {candidates} x {num_samples} x {steps} = {work:,} sample evaluations per plan "
                          f"exceeds the budget of {PLAN_BUDGET:,} (codi_ros/bounds.py); lower M or the steps")


def check_options(args, names: dict[str, str]) -> None:
    """Check parsed ``codi`` options in place: {argparse attribute: bound name}; None (not given) is skipped.
    BoundsError names the option (``--num-samples: ...``)."""
    for attr, name in names.items():
        value = getattr(args, attr, None)
        if value is not None:
            setattr(args, attr, check(name, value, "--" + attr.replace("_", "-")))
