"""Forward kinematics and the tool-site Jacobian of one FR3 + Panda hand, in its own base frame.

Uses MuJoCo as a kinematics library on the one-arm model of :mod:`codi_ros.robot.fr3`, the arm the
simulated world is built from, so the hardware action node and the simulator share one arm model.
"""

from __future__ import annotations

import mujoco
import numpy as np

from codi_ros.config import ArmConfig
from codi_ros.frames import ArmState, BaseFrame
from codi_ros.robot.fr3 import arm_joint_names, build_arm_xml

_NAME = "arm"


class ArmKinematics:
    def __init__(self):
        self.model = mujoco.MjModel.from_xml_string(build_arm_xml(ArmConfig(_NAME, (0.0, 0.0), 0.0)))
        self.data = mujoco.MjData(self.model)
        self._site = self.model.site(f"{_NAME}_tcp").id
        self._qadr = [self.model.joint(j).qposadr[0] for j in arm_joint_names(_NAME)]
        self._dofs = [self.model.joint(j).dofadr[0] for j in arm_joint_names(_NAME)]
        self.q_lower = np.array([self.model.joint(j).range[0] for j in arm_joint_names(_NAME)])
        self.q_upper = np.array([self.model.joint(j).range[1] for j in arm_joint_names(_NAME)])
        self._jac = np.zeros((6, self.model.nv))   # mj_jacSite's output rows: linear (0-2), angular (3-5)

    def _set(self, q: np.ndarray) -> None:
        q = np.asarray(q, dtype=float)
        if q.shape != (7,) or not np.isfinite(q).all():
            raise ValueError(f"joint positions must be 7 finite values, got {q}")
        self.data.qpos[self._qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tool-centre-point position (3,) and orientation (3, 3) in the base frame."""
        self._set(q)
        return self.data.site_xpos[self._site].copy(), self.data.site_xmat[self._site].reshape(3, 3).copy()

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """(6, 7) Jacobian of the tool site: rows 0-2 linear, 3-5 angular velocity, base frame."""
        return self.forward_and_jacobian(q)[2]

    def forward_and_jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`forward` and :meth:`jacobian` from one kinematics pass."""
        self._set(q)
        mujoco.mj_jacSite(self.model, self.data, self._jac[:3], self._jac[3:], self._site)
        return (self.data.site_xpos[self._site].copy(), self.data.site_xmat[self._site].reshape(3, 3).copy(),
                self._jac[:, self._dofs])


def arm_state_from_joints(kinematics: ArmKinematics, frame: BaseFrame, q: np.ndarray, qdot: np.ndarray,
                          gripper_width: float) -> ArmState:
    """World-frame end-effector state by forward kinematics: pose of the tool site, twist = J(q) qdot."""
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(qdot))):
        nan = np.full(3, np.nan)
        return ArmState(nan, np.full((3, 3), np.nan), nan, nan, gripper_width)
    pos, rot, jacobian = kinematics.forward_and_jacobian(q)
    v = jacobian @ qdot
    return ArmState(ee_pos=frame.point_to_world(pos), ee_rot=frame.rotation @ rot,
                    ee_linvel=frame.vec_to_world(v[:3]), ee_angvel=frame.vec_to_world(v[3:]),
                    gripper_width=gripper_width)
