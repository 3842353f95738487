"""Joint trajectories: what the executor hands a driver, and how a trajectory controller follows them.

The executor (:mod:`codi_ros.control.executor`) turns a twist chunk into joint position and velocity
setpoints at the IK rate. Run ahead, those setpoints are a :class:`JointTrajectory`, which is what the
ROS action nodes send once per plan to a trajectory controller (ros2_control's
JointTrajectoryController on the FR3s, :class:`TrajectoryFollower` in the simulated Franka) instead of
streaming velocities: the controller interpolates between the points at its own rate (the FR3's 1 kHz), so
the arm sees a smooth command however late or jittery the messages are.

Interpolation is the JointTrajectoryController's ``splines``: between two points a quintic polynomial in
time when the points carry accelerations, a cubic one when they carry velocities only (so positions and
velocities, and with accelerations those too, are continuous at every point). The executor's points carry
positions and velocities, placed so that the cubics are its velocity commands ramped linearly
(:meth:`JointTrajectory.from_segments`), as its limits assume a 1 kHz controller runs them.

A trajectory carries the gripper width too (NaN where none is commanded yet): each point's width
holds from that point on (a gripper goes to a width; it is not interpolated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class TrajectoryError(ValueError):
    """A malformed joint trajectory; the message names the field."""


def _spline(s: np.ndarray, h: np.ndarray, p0, v0, a0, p1, v1, a1) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities at fractions ``s`` (m, 1) of segments of durations ``h`` (m, 1) between
    (p0, v0, a0) and (p1, v1, a1) (each (m, 7)): quintic Hermite, or cubic where ``a0`` is None."""
    if a0 is None:
        pos = (2 * s**3 - 3 * s**2 + 1) * p0 + (s**3 - 2 * s**2 + s) * h * v0 + (3 * s**2 - 2 * s**3) * p1 \
            + (s**3 - s**2) * h * v1
        vel = ((6 * s**2 - 6 * s) * (p0 - p1) / h + (3 * s**2 - 4 * s + 1) * v0 + (3 * s**2 - 2 * s) * v1)
        return pos, vel
    h0, h5 = 1 - 10 * s**3 + 15 * s**4 - 6 * s**5, 10 * s**3 - 15 * s**4 + 6 * s**5
    h1, h4 = s - 6 * s**3 + 8 * s**4 - 3 * s**5, -4 * s**3 + 7 * s**4 - 3 * s**5
    h2, h3 = (s**2 - 3 * s**3 + 3 * s**4 - s**5) / 2, (s**3 - 2 * s**4 + s**5) / 2
    pos = h0 * p0 + h5 * p1 + h * (h1 * v0 + h4 * v1) + h**2 * (h2 * a0 + h3 * a1)
    d0, d5 = -30 * s**2 + 60 * s**3 - 30 * s**4, 30 * s**2 - 60 * s**3 + 30 * s**4
    d1, d4 = 1 - 18 * s**2 + 32 * s**3 - 15 * s**4, -12 * s**2 + 28 * s**3 - 15 * s**4
    d2, d3 = (2 * s - 9 * s**2 + 12 * s**3 - 5 * s**4) / 2, (3 * s**2 - 8 * s**3 + 5 * s**4) / 2
    vel = (d0 * p0 + d5 * p1) / h + d1 * v0 + d4 * v1 + h * (d2 * a0 + d3 * a1)
    return pos, vel


@dataclass(frozen=True)
class JointTrajectory:
    """Points at increasing ``times`` (n,): joint positions, velocities and (optionally) accelerations (n, 7),
    gripper widths (n,)."""

    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    widths: np.ndarray
    accelerations: np.ndarray | None = None

    def __post_init__(self) -> None:
        t, q, v, w = (np.asarray(x, dtype=float) for x in (self.times, self.positions, self.velocities, self.widths))
        a = None if self.accelerations is None else np.asarray(self.accelerations, dtype=float)
        if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] != 7:
            raise TrajectoryError(f"positions: expected shape (n >= 1, 7), got {q.shape}")
        if v.shape != q.shape or (a is not None and a.shape != q.shape):
            raise TrajectoryError(f"velocities / accelerations: expected shape {q.shape}, got {v.shape}, "
                                  f"{None if a is None else a.shape}")
        if t.shape != (len(q),) or w.shape != (len(q),):
            raise TrajectoryError(f"times / widths: expected {len(q)} values each, got {t.shape}, {w.shape}")
        if not all(np.all(np.isfinite(x)) for x in (t, q, v, np.zeros(1) if a is None else a)):
            raise TrajectoryError("times / positions / velocities / accelerations: NaN or inf")
        if np.any(np.diff(t) <= 0):
            raise TrajectoryError("times: must increase from point to point")
        for name, value in (("times", t), ("positions", q), ("velocities", v), ("widths", w), ("accelerations", a)):
            object.__setattr__(self, name, value)

    @classmethod
    def from_segments(cls, times: np.ndarray, positions: np.ndarray, segment_velocities: np.ndarray,
                      widths: np.ndarray, velocity_before: np.ndarray) -> JointTrajectory:
        """An executor's commands as a trajectory controller should run them: velocity
        ``segment_velocities[k]`` held from ``times[k]`` to ``times[k + 1]`` (``positions[k + 1] - positions[k]
        = segment_velocities[k] * dt``), after ``velocity_before`` up to ``times[0]``. The points sit
        mid-period, at the command's mean position there and with its velocity, the command before ``times[0]``
        first: the cubic between two of them has the constant acceleration from one command to the next, which
        is how the executor's limiter (:class:`~codi_ros.control.executor.JointCommandLimiter`) models the 1 kHz
        controller, so its acceleration and jerk limits hold there."""
        t, q, v = (np.asarray(x, dtype=float) for x in (times, positions, segment_velocities))
        dt = float(t[1] - t[0]) if len(t) > 1 else 0.01
        before = np.asarray(velocity_before, dtype=float)[None]
        return cls(np.r_[t[0] - dt / 2, t + dt / 2], np.vstack([q[:1] - before * dt / 2, q + v * dt / 2]),
                   np.vstack([before, v]), np.r_[widths[:1], widths])

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])

    def sample_many(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions and velocities (m, 7) at times ``ts`` (m,), splined between points; the first
        point before the start, the last one (at rest) after the end."""
        ts = np.atleast_1d(np.asarray(ts, dtype=float))
        n = len(self.times)
        k = np.clip(np.searchsorted(self.times, ts + 1e-12, side="right") - 1, 0, max(n - 2, 0))
        if n == 1:
            return np.repeat(self.positions, len(ts), 0), np.repeat(self.velocities, len(ts), 0)
        h = (self.times[k + 1] - self.times[k])[:, None]
        s = np.clip((ts - self.times[k])[:, None] / h, 0.0, 1.0)
        a = self.accelerations
        pos, vel = _spline(s, h, self.positions[k], self.velocities[k], None if a is None else a[k],
                           self.positions[k + 1], self.velocities[k + 1], None if a is None else a[k + 1])
        before, after = ts < self.times[0], ts >= self.times[-1]
        vel[before], vel[after] = self.velocities[0], self.velocities[-1]
        return pos, vel

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, float]:
        """(joint positions, joint velocities, gripper width) at time t (:meth:`sample_many`; the width of
        the point at or before t)."""
        k = max(int(np.searchsorted(self.times, t + 1e-9, side="right")) - 1, 0)
        pos, vel = self.sample_many(np.array([t]))
        return pos[0], vel[0], float(self.widths[k])

    def acceleration_at(self, t: float) -> np.ndarray:
        """The interpolated joint accelerations at t (numerically), zero outside the trajectory."""
        eps = 1e-5
        if t <= self.start or t >= self.end:
            return np.zeros(7)
        _, vel = self.sample_many(np.array([t - eps, t + eps]))
        return (vel[1] - vel[0]) / (2 * eps)

    def shifted(self, offset: float) -> JointTrajectory:
        """The same trajectory in another clock (every time + ``offset``)."""
        return JointTrajectory(self.times + offset, self.positions, self.velocities, self.widths, self.accelerations)

    def _take(self, index) -> JointTrajectory:
        """The points ``index`` (a slice or a mask) selects."""
        a = self.accelerations
        return JointTrajectory(self.times[index], self.positions[index], self.velocities[index], self.widths[index],
                               None if a is None else a[index])

    def _then(self, later: JointTrajectory) -> JointTrajectory:
        """These points, then ``later``'s (accelerations where both carry them)."""
        acc = None if self.accelerations is None or later.accelerations is None else \
            np.vstack([self.accelerations, later.accelerations])
        return JointTrajectory(np.r_[self.times, later.times], np.vstack([self.positions, later.positions]),
                               np.vstack([self.velocities, later.velocities]), np.r_[self.widths, later.widths], acc)

    def after(self, t: float) -> JointTrajectory:
        """The points after time t (at least the last one): what is left of a trajectory sent late."""
        keep = max(min(int(np.searchsorted(self.times, t, side="right")), len(self.times) - 1), 0)
        return self if keep == 0 else self._take(slice(keep, None))

    def following(self, earlier: JointTrajectory, since: float) -> JointTrajectory:
        """This trajectory after the points of ``earlier`` from the last one at or before ``since`` up to this
        one's start: a controller that takes it while running ``earlier`` from ``since`` on samples the same
        motion until this one's own points begin, with no join in between. Unchanged if ``earlier`` ended by
        ``since`` (the controller holds its last point, and joins this one to it)."""
        if earlier.end <= since:
            return self
        first = earlier.times[max(int(np.searchsorted(earlier.times, since, side="right")) - 1, 0)]
        keep = (earlier.times >= first) & (earlier.times < self.start - 1e-9)
        return earlier._take(keep)._then(self) if keep.any() else self

    def joined_from(self, t: float, q: np.ndarray, qdot: np.ndarray, qddot: np.ndarray) -> JointTrajectory:
        """This trajectory as a JointTrajectoryController runs it when it arrives at time t, before its first
        point, while the arm is commanded to (q, qdot, qddot): a spline from that state at t to the first point
        (with ``interpolate_from_desired_state``), then this. Unchanged when t is not before the first point."""
        if t >= self.start - 1e-9:
            return self
        now = JointTrajectory(np.array([t]), np.asarray(q)[None], np.asarray(qdot)[None], self.widths[:1],
                              np.asarray(qddot)[None])
        return now._then(self)


class TrajectoryFollower:
    """A JointTrajectoryController's view of its commands: a trajectory that arrives replaces the current one
    at once, joined to the commanded state of that moment (:meth:`JointTrajectory.joined_from`); without
    a trajectory it holds the position it was given (:meth:`hold`)."""

    def __init__(self) -> None:
        self._current: JointTrajectory | None = None
        self._hold: np.ndarray | None = None

    @property
    def active(self) -> bool:
        return self._current is not None

    def hold(self, q: np.ndarray) -> None:
        """Command the joints to stay at ``q`` (a controller's state on activation, or after a stop)."""
        self._current, self._hold = None, np.asarray(q, dtype=float).copy()

    def replace(self, trajectory: JointTrajectory, now: float) -> None:
        """``trajectory`` arrives at time ``now`` (one whose first point is past runs part-way, as
        ros2_control's controller runs it)."""
        if self._current is not None:
            q, qdot = (x[0] for x in self._current.sample_many(np.array([now])))
            self._current = trajectory.joined_from(now, q, qdot, self._current.acceleration_at(now))
        elif self._hold is not None:
            self._current = trajectory.joined_from(now, self._hold, np.zeros(7), np.zeros(7))
        else:
            self._current = trajectory

    def shift(self, offset: float) -> None:
        """Move the trajectory to another clock (every time + ``offset``)."""
        self._current = None if self._current is None else self._current.shifted(offset)

    def clear(self) -> None:
        self._current = self._hold = None

    def positions(self, ts: np.ndarray) -> np.ndarray | None:
        """The commanded joint positions (m, 7) at times ``ts``, or None before any trajectory or hold."""
        if self._current is not None:
            return self._current.sample_many(ts)[0]
        return None if self._hold is None else np.repeat(self._hold[None], len(np.atleast_1d(ts)), 0)

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, float] | None:
        """The setpoint at time t, or None before any trajectory."""
        return None if self._current is None else self._current.sample(t)
