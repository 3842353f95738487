"""MuJoCo-backed cost simulator: the exact (contact physics) counterpart of the kinematic model.

Implements :class:`codi_ros.core.kinematic_model.CostSimulator`. Each candidate joint chunk is
executed in a private copy of the world, starting from arm postures solved by IK for the state's
end-effector positions (tool pointing down), the measured gripper widths and the cube position.
About 50 ms of wall time per candidate on one core: use it to re-rank a few final candidates or
to check the kinematic model, not inside every denoising step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from codi_ros.config import WorldConfig
from codi_ros.control.kinematics import ArmKinematics
from codi_ros.core.kinematic_model import SimState, Trajectories
from codi_ros.frames import BaseFrame, rotation_error
from codi_ros.sim.world import TwoArmWorld

IK_ITERATIONS = 200
IK_TOLERANCE = 1e-3       # m
TOOL_DOWN_BASE = np.diag([1.0, -1.0, -1.0])   # tool orientation in the base frame at yaw 0


def posture_for(kin: ArmKinematics, home_q: np.ndarray, ee_base: np.ndarray) -> np.ndarray:
    """Joint positions putting the tool at ``ee_base`` (base frame) pointing down; damped Newton steps."""
    q = home_q.copy()
    for _ in range(IK_ITERATIONS):
        pos, rot = kin.forward(q)
        err = np.r_[ee_base - pos, rotation_error(TOOL_DOWN_BASE, rot)]
        if np.linalg.norm(err[:3]) < IK_TOLERANCE and np.linalg.norm(err[3:]) < 1e-2:
            break
        jac = kin.jacobian(q)
        q = np.clip(q + jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(6), err), kin.q_lower, kin.q_upper)
    return q


class PhysicsModel:
    """Runs candidates in MuJoCo; ``rollout(state, chunks)`` like the kinematic model."""

    def __init__(self, world: WorldConfig):
        self.cfg = world
        self.world = TwoArmWorld(world)
        self.kin = ArmKinematics()
        self.home_q = np.asarray(world.home_qpos)

    def rollout(self, state: SimState, chunks: Tensor) -> Trajectories:
        M, N, K, _ = chunks.shape
        if N != len(self.cfg.arms):
            raise ValueError(f"chunks must hold {len(self.cfg.arms)} arms, got {N}")
        names = self.cfg.arm_names
        postures, widths = {}, {}
        for i, name in enumerate(names):
            frame = BaseFrame(tuple(state.base_xy[i].tolist()), float(state.base_yaw[i]))
            postures[name] = posture_for(self.kin, self.home_q, frame.point_to_base(state.ee_pos[i].double().numpy()))
            widths[name] = float(state.gripper_width[i])
        cube = state.cube_pos.double().numpy()
        actions = chunks.detach().double().numpy()
        ee = np.zeros((M, N, K, 3))
        cube_traj = np.zeros((M, K, 3))
        holder = -np.ones((M, K), dtype=np.int64)
        for m in range(M):
            self.world.reset(cube_xy=(cube[0], cube[1]), cube_z=cube[2], arm_qpos=postures, gripper_width=widths)
            for k in range(K):
                for i, name in enumerate(names):
                    self.world.apply_action(name, actions[m, i, k])
                self.world.step_control()
                for i, name in enumerate(names):
                    ee[m, i, k] = self.world.arm_state(name).ee_pos
                    if self.world.holding(name):
                        holder[m, k] = i
                cube_traj[m, k] = self.world.cube_state().pos
        as_t = lambda x: torch.as_tensor(x, dtype=chunks.dtype)  # noqa: E731
        return Trajectories(ee_pos=as_t(ee), cube_pos=as_t(cube_traj), holder=torch.as_tensor(holder))
