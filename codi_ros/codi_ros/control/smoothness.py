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
