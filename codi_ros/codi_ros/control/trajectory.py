"""Joint trajectories: what the executor hands a driver, and how a trajectory controller follows them.

The executor (:mod:`codi_ros.control.executor`) turns a twist chunk into joint position and velocity
setpoints at the IK rate. Run ahead, those setpoints are a :class:`JointTrajectory`, which is what the
ROS action nodes send once per plan to a trajectory controller (ros2_control's
JointTrajectoryController on the FR3s, :class:`TrajectoryFollower` in the simulated Franka) instead of
streaming velocities: the controller interpolates between the points at its own rate, so the arm sees a
smooth command however late or jittery the messages are.

A trajectory carries the gripper width too (NaN where none is commanded yet): each point's width
holds from that point on (a gripper goes to a width; it is not interpolated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class TrajectoryError(ValueError):
    """A malformed joint trajectory; the message names the field."""


@dataclass(frozen=True)
class JointTrajectory:
    """Points at increasing ``times`` (n,): joint positions (n, 7), velocities (n, 7), gripper widths (n,)."""

    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    widths: np.ndarray

    def __post_init__(self) -> None:
        t, q, v, w = (np.asarray(x, dtype=float) for x in (self.times, self.positions, self.velocities, self.widths))
        if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] != 7:
            raise TrajectoryError(f"positions: expected shape (n >= 1, 7), got {q.shape}")
        if v.shape != q.shape:
            raise TrajectoryError(f"velocities: expected shape {q.shape}, got {v.shape}")
        if t.shape != (len(q),) or w.shape != (len(q),):
            raise TrajectoryError(f"times / widths: expected {len(q)} values each, got {t.shape}, {w.shape}")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(q)) and np.all(np.isfinite(v))):
            raise TrajectoryError("times / positions / velocities: NaN or inf")
        if np.any(np.diff(t) <= 0):
            raise TrajectoryError("times: must increase from point to point")
        for name, value in (("times", t), ("positions", q), ("velocities", v), ("widths", w)):
            object.__setattr__(self, name, value)

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, float]:
        """(joint positions, joint velocities, gripper width) at time t: positions interpolated linearly
        between points, velocities and width of the point at or before t; the first point before the start,
        the last one after the end."""
        k = int(np.searchsorted(self.times, t + 1e-9, side="right")) - 1
        if k < 0 or k == len(self.times) - 1:
            k = max(k, 0)
            return self.positions[k].copy(), self.velocities[k].copy(), float(self.widths[k])
        a = (t - self.times[k]) / (self.times[k + 1] - self.times[k])
        return ((1 - a) * self.positions[k] + a * self.positions[k + 1], self.velocities[k].copy(),
                float(self.widths[k]))

    def shifted(self, offset: float) -> JointTrajectory:
        """The same trajectory in another clock (every time + ``offset``)."""
        return JointTrajectory(self.times + offset, self.positions, self.velocities, self.widths)


class TrajectoryFollower:
    """A trajectory controller's view of its commands: a new trajectory replaces the old one from its own
    start time on (before it, the old one still runs), as ros2_control's JointTrajectoryController does."""

    def __init__(self) -> None:
        self._previous: JointTrajectory | None = None
        self._current: JointTrajectory | None = None

    @property
    def active(self) -> bool:
        return self._current is not None

    def replace(self, trajectory: JointTrajectory) -> None:
        self._previous, self._current = self._current, trajectory

    def shift(self, offset: float) -> None:
        """Move the trajectories to another clock (every time + ``offset``)."""
        self._previous, self._current = (None if t is None else t.shifted(offset)
                                         for t in (self._previous, self._current))

    def clear(self) -> None:
        self._previous = self._current = None

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, float] | None:
        """The setpoint at time t, or None before any trajectory."""
        if self._current is None:
            return None
        if t < self._current.start - 1e-9 and self._previous is not None:
            return self._previous.sample(t)
        return self._current.sample(t)
