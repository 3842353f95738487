"""Latency-aware planning: what a plan started at time t0 must leave alone (beyond the paper).

While a plan is computed the arms keep executing the chunk they have: at 10 Hz a 0.3 s plan lets
d = ceil(latency / dt) = 3 actions run. A naive plan ignores this: it is computed for the state at
t0, its first actions are skipped on arrival, and the arms jump from the old chunk into the middle
of a chunk that assumed they stood still. Following real-time chunking (RTC; Black, Galliker,
Levine 2025), a latency-aware plan freezes those d committed actions as the first d actions of
the new chunk and samples only the rest, conditioned on them (inpainting,
:meth:`codi_ros.core.sampler.CoDiSampler.sample`'s ``prefix``): the score network sees the
committed prefix, and the guidance's cost simulator rolls it out before the new actions, so the
new actions are planned for the state the arms will be in when they start. The chunk takes over
at t0 + d dt, exactly at its first new action (:mod:`codi_ros.control.executor`).

d must be chosen before planning: :class:`LatencyEstimate` takes the slowest of the last
``window`` plans (a plan slower than d is dropped, which costs more than one step of margin), or
a fixed latency when one is injected.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from codi_ros.config import ConfigError


@dataclass(frozen=True)
class RealtimeConfig:
    """``planner.yaml`` ``realtime``."""

    commit: bool = True            # latency-aware: freeze the actions that run while planning (False: naive)
    initial_latency: float = 0.3   # s assumed before any plan was measured
    window: int = 20               # plans whose slowest latency sets d
    max_commit: int = 8            # at most this many committed steps (d <= H - execution)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_latency) and self.initial_latency >= 0):
            raise ConfigError(f"planner.realtime.initial_latency must be finite and >= 0, got {self.initial_latency}")
        if self.window < 1 or self.max_commit < 0:
            raise ConfigError(f"planner.realtime: need window >= 1 and max_commit >= 0, got {self}")


class LatencyEstimate:
    """How many control steps the next plan will take: ceil(slowest recent latency / dt)."""

    def __init__(self, config: RealtimeConfig, dt: float, fixed: float | None = None):
        self.config, self.dt, self.fixed = config, dt, fixed
        self._recent: deque[float] = deque(maxlen=config.window)

    def update(self, latency_s: float) -> None:
        if math.isfinite(latency_s) and latency_s >= 0:
            self._recent.append(latency_s)

    def seconds(self) -> float:
        if self.fixed is not None:
            return self.fixed
        return max(self._recent) if self._recent else self.config.initial_latency

    def steps(self) -> int:
        return steps_for(self.seconds(), self.dt)

    def commit_steps(self) -> int:
        """d for the next plan: 0 for a naive planner."""
        return min(self.steps(), self.config.max_commit) if self.config.commit else 0


def steps_for(latency_s: float, dt: float) -> int:
    """Control steps that pass during ``latency_s`` (rounded up: an action starts on a step)."""
    return max(0, math.ceil(latency_s / dt - 1e-9))
