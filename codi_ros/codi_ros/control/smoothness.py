"""Joint motion as a 1 kHz controller sees it: velocity steps, acceleration and jerk of a command stream.

The executor commands joint velocities at the IK rate (100 Hz). A controller running at
``servo_hz`` (the FR3's 1 kHz) that interpolates them linearly sees, per joint, a constant
acceleration (v[k+1] - v[k]) / h over each command period h and a jerk (a[k] - a[k-1]) * servo_hz
where one period's acceleration meets the next. The FR3 aborts above 10 rad/s^2 and 5000 rad/s^3.
"""

from __future__ import annotations

import numpy as np


def joint_profile(qdot: np.ndarray, h: float, servo_hz: float = 1000.0) -> dict[str, np.ndarray]:
    """Per command k of a (T, 7) stream at period h, which starts from rest: the velocity step from the
    previous command to it, the acceleration of the period that ends at it, and the jerk where that
    period begins (all (T, 7), absolute values)."""
    qdot = np.asarray(qdot, dtype=float)
    steps = np.diff(qdot, axis=0, prepend=np.zeros((1, qdot.shape[1])))
    acc = steps / h
    jerk = np.abs(np.diff(acc, axis=0, prepend=np.zeros((1, qdot.shape[1])))) * servo_hz
    return {"velocity_step": np.abs(steps), "acceleration": np.abs(acc), "jerk": jerk}


def summarize_profile(profile: dict[str, np.ndarray], at_join: np.ndarray) -> dict[str, dict[str, float]]:
    """{quantity: {max_at_joins, max_inside_chunks, p99_inside_chunks}} over all joints."""
    out = {}
    for name, values in profile.items():
        per_tick = values.max(axis=1)
        joins, inside = per_tick[at_join], per_tick[~at_join]
        out[name] = {"max_at_joins": float(joins.max()) if joins.size else 0.0,
                     "max_inside_chunks": float(inside.max()) if inside.size else 0.0,
                     "p99_inside_chunks": float(np.percentile(inside, 99)) if inside.size else 0.0}
    return out


class MotionGeneratorCheck:
    """The FR3's check of a joint position command stream at its servo rate (1 kHz): velocity, acceleration
    and jerk from finite differences of consecutive commands, as libfranka computes them, each against its
    limit. A stream that exceeds one is what makes the real arm abort with a reflex; the simulated Franka
    (``codi_ros.ros.sim_bridge``) raises one then, and the experiments report the peaks (``peaks``)."""

    QUANTITIES = ("velocity", "acceleration", "jerk")

    def __init__(self, velocity_limit, acceleration_limit, jerk_limit, servo_hz: float = 1000.0):
        self.limits = {k: np.asarray(v, dtype=float) for k, v in
                       zip(self.QUANTITIES, (velocity_limit, acceleration_limit, jerk_limit), strict=True)}
        self.hz = float(servo_hz)
        self._last: np.ndarray | None = None           # the last 3 commands (3, 7)
        self.peaks = dict.fromkeys(self.QUANTITIES, 0.0)

    def reset(self, q: np.ndarray) -> None:
        """The arm at rest at ``q`` (after a reset, a hold or a recovery)."""
        self._last = np.repeat(np.asarray(q, dtype=float)[None], 3, axis=0)

    def restart(self, recent: np.ndarray) -> None:
        """Go on from the last 3 commands ``recent`` (3, 7), e.g. after the stream moved to another clock."""
        self._last = np.asarray(recent, dtype=float).copy()

    def check(self, commands: np.ndarray) -> str | None:
        """Take the next commands (m, 7), one per servo cycle; the first limit they exceed, named, or None."""
        commands = np.asarray(commands, dtype=float)
        if self._last is None:
            self.reset(commands[0])
        q = np.vstack([self._last, commands])
        self._last = q[-3:]
        derivatives = {"velocity": np.diff(q, 1, axis=0)[2:] * self.hz,
                       "acceleration": np.diff(q, 2, axis=0)[1:] * self.hz**2,
                       "jerk": np.diff(q, 3, axis=0) * self.hz**3}
        for name in self.QUANTITIES:
            value = np.abs(derivatives[name])
            self.peaks[name] = max(self.peaks[name], float(value.max(initial=0.0)))
            over = value > self.limits[name] * (1 + 1e-6)
            if over.any():
                cycle, joint = np.argwhere(over)[0]
                return (f"joint_motion_generator_{name}_violation: joint {joint + 1} {name} "
                        f"{value[cycle, joint]:.4g} > {self.limits[name][joint]:.4g} at 1 kHz")
        return None
