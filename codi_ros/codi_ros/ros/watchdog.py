"""Staleness / NaN watchdog over named inputs, a log-once filter that keeps a fault to one line, and a
rate grid that picks the same instants out of a stamped stream in every node."""

from __future__ import annotations

import math
from collections.abc import Iterable


class StateMonitor:
    """Tracks when each named input (an arm state, the cube pose, joint states) last arrived and
    whether it held NaN; ``problems(now)`` says what is missing, too old or not finite."""

    def __init__(self, timeouts: dict[str, float]):
        if any(not t > 0 for t in timeouts.values()):
            raise ValueError(f"timeouts must be positive, got {timeouts}")
        self.timeouts = dict(timeouts)
        self._stamp: dict[str, float] = {}
        self._finite: dict[str, bool] = {}

    def update(self, name: str, stamp: float, finite: bool = True) -> None:
        if name not in self.timeouts:
            raise KeyError(f"unknown input {name!r}; monitored: {sorted(self.timeouts)}")
        self._stamp[name], self._finite[name] = stamp, finite and math.isfinite(stamp)

    def problems(self, now: float, names: Iterable[str] | None = None) -> dict[str, str]:
        """{input: reason} for every input (of ``names``, default all) that cannot be used at ``now``."""
        out = {}
        for name in self.timeouts if names is None else names:
            limit = self.timeouts[name]
            if name not in self._stamp:
                out[name] = f"no {name} received yet"
            elif not self._finite[name]:
                out[name] = f"{name} has NaN or inf"
            elif now - self._stamp[name] > limit:
                out[name] = f"{name} is {now - self._stamp[name]:.2f} s old (limit {limit:.2f} s)"
            elif self._stamp[name] - now > limit:   # a clock or stamp gone wrong: it would never go stale
                out[name] = f"{name} is stamped {self._stamp[name] - now:.2f} s in the future (limit {limit:.2f} s)"
        return out


class LogOnce:
    """Turns a changing set of problems into log lines: one when a problem appears, one when it clears.

    Problems are keyed (e.g. by input name), so a problem whose text changes (a growing age) is
    still reported once.
    """

    def __init__(self) -> None:
        self._active: dict[str, str] = {}

    def update(self, problems: dict[str, str], context: str = "") -> list[tuple[str, str]]:
        """(level, text) lines to log now; level is "warn" for a new problem, "info" for a cleared one."""
        lines = [("warn", f"{context}{text}") for key, text in problems.items() if key not in self._active]
        lines += [("info", f"{context}recovered: {text}") for key, text in self._active.items() if key not in problems]
        self._active = {k: self._active.get(k, t) for k, t in problems.items()}
        return lines


class RateGrid:
    """Passes one stamp per period of ``rate_hz`` on a grid of absolute time: the first stamp of each
    1 / rate_hz slot. Nodes that thin out the same stamped stream (the arm states and the simulator's
    true cube pose, both from the joint states' stamps) thus pick the same instants: the planner sees
    cube and arms at one time."""

    def __init__(self, rate_hz: float):
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz: must be a positive number, got {rate_hz}")
        self.rate_hz = rate_hz
        self._slot = -math.inf

    def due(self, stamp: float) -> bool:
        slot = math.floor(stamp * self.rate_hz + 1e-6)
        if slot == self._slot:
            return False
        self._slot = slot
        return True
