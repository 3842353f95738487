"""Cartesian velocity -> joint velocity by damped least squares (shared by the sim and the arms).

Pure numpy: the simulator feeds it MuJoCo's site Jacobian; the hardware action node feeds it the
Jacobian of :class:`codi_ros.control.kinematics.ArmKinematics` at the measured joint positions.
"""

from __future__ import annotations

import math

import numpy as np

from codi_ros.config import ControlConfig

JOINT_LIMIT_MARGIN = 0.05   # rad kept clear of every joint limit


def clamp_twist(twist: np.ndarray, max_linear: float, max_angular: float) -> np.ndarray:
    """Scale the linear and angular parts of a twist (6,) down to their speed limits."""
    out = np.array(twist, dtype=float)
    for part, limit in ((slice(0, 3), max_linear), (slice(3, 6), max_angular)):
        n = math.sqrt(out[part] @ out[part])
        if n > limit:
            out[part] *= limit / n
    return out


class DifferentialIK:
    """qdot = J^T (J J^T + lambda^2 I)^-1 v  +  (I - J^+ J) k (q_home - q), then limited.

    The null-space term pulls the redundant 7th degree of freedom towards the home posture; joint
    velocities are scaled uniformly (direction kept) to the velocity limits, and motion further into
    a joint limit (within JOINT_LIMIT_MARGIN) is cancelled.
    """

    def __init__(self, control: ControlConfig, home_q: np.ndarray, q_lower: np.ndarray, q_upper: np.ndarray):
        self.control = control
        self.home_q = np.asarray(home_q, dtype=float)
        self.q_lower = np.asarray(q_lower, dtype=float) + JOINT_LIMIT_MARGIN
        self.q_upper = np.asarray(q_upper, dtype=float) - JOINT_LIMIT_MARGIN
        self.qdot_max = np.asarray(control.joint_velocity_limit, dtype=float)
        self._damping = control.ik_damping ** 2 * np.eye(6)

    def joint_velocities(self, jac: np.ndarray, q: np.ndarray, twist: np.ndarray) -> np.ndarray:
        """Joint velocities (7,) that track ``twist`` = (v, w) of the tool site, both in the Jacobian's frame."""
        if not (np.isfinite(jac).all() and np.isfinite(q).all() and np.isfinite(twist).all()):
            return np.zeros(7)                                     # bad input: hold still
        v = clamp_twist(twist, self.control.max_linear_speed, self.control.max_angular_speed)
        jjt = jac @ jac.T + self._damping
        pull = self.control.nullspace_gain * (self.home_q - q)
        # J^+ = J^T (J J^T + lambda^2 I)^-1 applied to v and to J pull, one solve: J^+ v + (I - J^+ J) pull
        x = np.linalg.solve(jjt, np.column_stack([v, jac @ pull]))
        qdot = jac.T @ (x[:, 0] - x[:, 1]) + pull
        blocked = ((q <= self.q_lower) & (qdot < 0)) | ((q >= self.q_upper) & (qdot > 0))
        qdot[blocked] = 0.0
        scale = np.max(np.abs(qdot) / self.qdot_max)
        return qdot / scale if scale > 1.0 else qdot

    def clip_positions(self, q: np.ndarray) -> np.ndarray:
        return np.minimum(np.maximum(q, self.q_lower), self.q_upper)   # np.clip's result, faster
