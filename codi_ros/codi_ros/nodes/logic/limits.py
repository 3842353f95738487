"""Safety limits between the IK and the arm: joint velocity / acceleration, stop ramp, workspace box.

Franka arms abort on discontinuous velocity commands (ROS_NOTES), so every joint velocity command
goes through :class:`JointCommandLimiter`: velocity limits, then acceleration limits relative to the
previous command. A hold (no chunk, stale or NaN state, stop) ramps every joint linearly to zero
within ``stop_time`` (faster than the acceleration limit allows, if that is what it takes: stopping
in time wins) and then holds exactly zero.
"""

from __future__ import annotations

import numpy as np

from codi_ros.control.workspace import WorkspaceBounds  # noqa: F401  (re-exported for the nodes)


def _scale_into(delta: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Scale ``delta`` uniformly (direction kept) so that |delta_i| <= bound_i for every i (up to rounding,
    so that a ramp lands exactly on its target)."""
    ratio = np.max(np.abs(delta) / bound)
    return delta / ratio if ratio > 1.0 + 1e-9 else delta


class JointCommandLimiter:
    def __init__(self, velocity_limit, acceleration_limit, dt: float, stop_time: float = 0.1):
        self.v_max = np.asarray(velocity_limit, dtype=float)
        self.a_max = np.asarray(acceleration_limit, dtype=float)
        if self.v_max.shape != self.a_max.shape or np.any(self.v_max <= 0) or np.any(self.a_max <= 0):
            raise ValueError("velocity_limit and acceleration_limit must be positive, one per joint")
        if not (dt > 0 and stop_time >= dt):
            raise ValueError(f"need 0 < dt <= stop_time, got dt={dt}, stop_time={stop_time}")
        self.dt, self.stop_time = dt, stop_time
        self.last = np.zeros_like(self.v_max)
        self._stop_step: np.ndarray | None = None   # per-joint decrement of the current stop ramp

    def limit(self, qdot: np.ndarray, hold: bool = False) -> np.ndarray:
        """The joint velocity to command this cycle, given the desired one (ignored while holding)."""
        qdot = np.asarray(qdot, dtype=float)
        if hold or qdot.shape != self.last.shape or not np.all(np.isfinite(qdot)):
            if self._stop_step is None:
                self._stop_step = np.maximum(self.a_max * self.dt, np.abs(self.last) * self.dt / self.stop_time)
            target, step = np.zeros_like(self.last), self._stop_step
        else:
            self._stop_step = None
            target, step = _scale_into(qdot, self.v_max), self.a_max * self.dt
        self.last = self.last + _scale_into(target - self.last, step)
        return self.last.copy()


