"""Play an action chunk in real time: which end-effector twist and gripper width to command now.

Action k of a chunk holds over [start + k dt, start + (k+1) dt) (zero-order hold, as in training).
A chunk stamped with the time its plan started is entered at the action that is due now, so the
planning latency is skipped rather than replayed late (receding horizon, paper Sec. V). A new chunk
replaces the current one with a linear cross-fade of ``blend_time`` from the last commanded twist,
so the twist is continuous across chunk boundaries. When the chunk runs out before a newer one
arrives (planning slower than execution), or on stop, the executor asks for a hold; the joint
limiter then ramps the arm to zero (see :mod:`codi_ros.nodes.logic.limits`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from codi_ros.frames import ACT_DIM


class ChunkError(ValueError):
    """A malformed action chunk; the message names the field."""


@dataclass(frozen=True)
class Chunk:
    """N actions (N, 7) of one arm in its base frame: ee linear vel (3), angular vel (3), gripper width."""

    start: float
    dt: float
    actions: np.ndarray

    def __post_init__(self) -> None:
        a = np.asarray(self.actions, dtype=float)
        if a.ndim != 2 or a.shape[1] != ACT_DIM:
            raise ChunkError(f"actions: expected shape (N, {ACT_DIM}), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ChunkError("actions: NaN or inf")
        if not (math.isfinite(self.dt) and self.dt > 0):
            raise ChunkError(f"dt: must be a positive number of seconds, got {self.dt}")
        if not math.isfinite(self.start):
            raise ChunkError(f"start: not a finite time, got {self.start}")
        object.__setattr__(self, "actions", a)

    @property
    def end(self) -> float:
        return self.start + len(self.actions) * self.dt

    def action_at(self, t: float) -> np.ndarray:
        """The action due at time t (the first one before the start; callers check ``end``)."""
        k = int(np.clip(math.floor((t - self.start) / self.dt), 0, len(self.actions) - 1))
        return self.actions[k]


@dataclass(frozen=True)
class ExecutorCommand:
    twist: np.ndarray            # (6,) commanded ee twist, base frame (zero while holding)
    gripper_width: float | None  # None until a chunk has given one; kept while holding
    hold: bool                   # no chunk to execute: bring the arm to rest and keep it there


class ChunkExecutor:
    def __init__(self, blend_time: float = 0.1):
        if blend_time < 0:
            raise ValueError(f"blend_time must be >= 0, got {blend_time}")
        self.blend_time = blend_time
        self._chunk: Chunk | None = None
        self._last_twist = np.zeros(6)
        self._blend_from = np.zeros(6)
        self._blend_start = -math.inf
        self._gripper: float | None = None
        self._stopped_at = -math.inf
        self._events: list[tuple[str, str]] = []

    def accept(self, chunk: Chunk, now: float) -> bool:
        """Take a new chunk (True), or reject it with a logged reason (False). No actions means stop
        (as of the chunk's stamp: chunks are compared in the planner's clock)."""
        if len(chunk.actions) == 0:
            self.stop(chunk.start)
            return True
        if chunk.end <= now:
            self._events.append(("warn", f"rejected a chunk that ended {now - chunk.end:.2f} s ago (late delivery?)"))
            return False
        if chunk.start < self._stopped_at:
            self._events.append(("warn", "rejected a chunk planned before the last stop"))
            return False
        if self._chunk is not None and chunk.start < self._chunk.start:
            self._events.append(("warn", "rejected a chunk older than the one being executed"))
            return False
        self._chunk = chunk
        self._blend_from, self._blend_start = self._last_twist.copy(), now
        return True

    def stop(self, t: float) -> None:
        """Drop the current chunk and hold until a chunk planned after time ``t`` arrives."""
        if self._chunk is not None:
            self._events.append(("info", "stop: holding"))
        self._chunk, self._stopped_at = None, t

    def command(self, now: float) -> ExecutorCommand:
        chunk = self._chunk
        if chunk is not None and now >= chunk.end:
            self._events.append(("warn", f"chunk ran out {now - chunk.end:.2f} s ago with no newer chunk "
                                         "(planning overrun or planner stopped): holding"))
            self._chunk = chunk = None
        if chunk is None:
            self._last_twist = np.zeros(6)
            return ExecutorCommand(self._last_twist, self._gripper, hold=True)
        action = chunk.action_at(now)
        alpha = 1.0 if self.blend_time == 0 else min(max((now - self._blend_start) / self.blend_time, 0.0), 1.0)
        self._last_twist = (1 - alpha) * self._blend_from + alpha * action[:6]
        self._gripper = float(action[6])
        return ExecutorCommand(self._last_twist, self._gripper, hold=False)

    def pop_events(self) -> list[tuple[str, str]]:
        """(level, text) lines worth logging once each, since the last call."""
        events, self._events = self._events, []
        return events
