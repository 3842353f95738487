"""Cost simulator: predicts where end effectors and cube go under candidate joint action chunks.

The guidance estimator (paper eq. 17) scores M candidate joint chunks per denoising step, and the
cost (eq. 20, Appendix C) needs the predicted trajectories tau(k), k = 1..K. The paper simulates
them in Isaac Gym; here the default is a batched kinematic model (SIM_NOTES: ~1-2 ms for 256
candidates x 16 steps): each end effector integrates its commanded base-frame velocity, rotated to
the world, at the control period; the cube follows a gripper that closes on it and otherwise rests
on the table. A physics backend only has to implement :class:`CostSimulator`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from codi_ros.config import ControlConfig, WorldConfig
from codi_ros.frames import WorldState


@dataclass(frozen=True)
class SimState:
    """The joint state s as world-frame tensors, arms in the config's order (what a rollout starts from)."""

    ee_pos: Tensor         # (N, 3)
    gripper_width: Tensor  # (N,) measured finger distance, m
    cube_pos: Tensor       # (3,)
    goal: Tensor           # (3,)
    base_xy: Tensor        # (N, 2)
    base_yaw: Tensor       # (N,)

    @property
    def num_arms(self) -> int:
        return int(self.ee_pos.shape[0])

    @classmethod
    def from_world(cls, state: WorldState, world: WorldConfig, dtype: torch.dtype = torch.float32) -> SimState:
        names = world.arm_names
        as_t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype)  # noqa: E731
        return cls(
            ee_pos=as_t([state.arms[n].ee_pos for n in names]),
            gripper_width=as_t([state.arms[n].gripper_width for n in names]),
            cube_pos=as_t(state.cube.pos),
            goal=as_t(state.goal),
            base_xy=as_t([world.arm(n).base_xy for n in names]),
            base_yaw=as_t([world.arm(n).base_yaw for n in names]),
        )


@dataclass(frozen=True)
class Trajectories:
    """Predicted world positions after each action of the chunk (tau(k), k = 1..K in Appendix C)."""

    ee_pos: Tensor    # (M, N, K, 3)
    cube_pos: Tensor  # (M, K, 3)
    holder: Tensor    # (M, K) index of the arm holding the cube after step k, -1 when none


class CostSimulator(Protocol):
    """Anything that turns candidate joint chunks into predicted trajectories."""

    def rollout(self, state: SimState, chunks: Tensor) -> Trajectories:
        """chunks: (M, N, K, 7) raw actions, each arm in its own base frame."""
        ...


def clip_to_limits(actions: Tensor, control: ControlConfig) -> Tensor:
    """Clip (..., 7) actions to what the arm controller executes: speed norms and gripper range."""
    lin, ang, width = actions[..., 0:3], actions[..., 3:6], actions[..., 6:7]
    lin = lin * (control.max_linear_speed / lin.norm(dim=-1, keepdim=True).clamp_min(control.max_linear_speed))
    ang = ang * (control.max_angular_speed / ang.norm(dim=-1, keepdim=True).clamp_min(control.max_angular_speed))
    return torch.cat([lin, ang, width.clamp(0.0, control.gripper_max_width)], dim=-1)


@dataclass(frozen=True)
class KinematicModelConfig:
    grasp_radius: float = 0.03     # end effector within this distance of the cube centre can grasp it
    hold_width_margin: float = 0.01  # a holder lets go only when commanded wider than cube size + margin
    ee_min_height: float = 0.01    # tool centre point above the table top, m
    ee_max_height: float = 0.80

    def __post_init__(self) -> None:
        if self.grasp_radius <= 0:
            raise ValueError(f"kinematic_model.grasp_radius must be > 0, got {self.grasp_radius}")
        if self.hold_width_margin < 0:
            raise ValueError(f"kinematic_model.hold_width_margin must be >= 0, got {self.hold_width_margin}")
        if not 0 <= self.ee_min_height < self.ee_max_height:
            raise ValueError("kinematic_model: need 0 <= ee_min_height < ee_max_height, "
                             f"got {self.ee_min_height}, {self.ee_max_height}")


class KinematicModel:
    """Batched kinematic cost simulator (torch, differentiable almost everywhere).

    Per control step k: (1) grasp logic on the commanded width, with hysteresis like a real gripper
    on a cube: the holder lets go when it commands a width above cube size + ``hold_width_margin``
    (so commanding its measured width keeps the grip); a free cube is grasped by the nearest arm that
    commands a width below the cube size with its end effector within ``grasp_radius`` (whether the
    fingers were open before is not checked); (2) each end effector moves by R(base_yaw) v dt,
    clamped to the table, the height band and the arm's reach radius; (3) a held
    cube moves with its holder, a released cube drops to the table (z = half the cube size).
    Orientation is not tracked: the cost only uses positions.
    """

    def __init__(self, world: WorldConfig, config: KinematicModelConfig | None = None):
        self.world = world
        self.config = config or KinematicModelConfig()
        self.dt = world.control.dt

    def initial_holder(self, state: SimState) -> Tensor:
        """() index of the arm holding the cube now (at it, fingers <= cube size + margin apart), -1 if none."""
        dist = (state.ee_pos - state.cube_pos).norm(dim=-1)
        holding = (dist < self.config.grasp_radius) & (
            state.gripper_width <= self.world.cube.size + self.config.hold_width_margin)
        return torch.where(holding.any(), torch.where(holding, dist, torch.inf).argmin(), -1)

    def rollout(self, state: SimState, chunks: Tensor) -> Trajectories:
        if chunks.ndim != 4 or chunks.shape[1] != state.num_arms or chunks.shape[3] != 7:
            raise ValueError(f"chunks must be (M, {state.num_arms}, K, 7), got {tuple(chunks.shape)}")
        M, N, K, _ = chunks.shape
        dtype, half_cube = chunks.dtype, 0.5 * self.world.cube.size
        actions = clip_to_limits(chunks, self.world.control)
        c, s = state.base_yaw.cos(), state.base_yaw.sin()
        rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2).to(dtype)  # (N, 2, 2)
        vel_xy = torch.einsum("nij,mnkj->mnki", rot, actions[..., 0:2])
        step = torch.cat([vel_xy, actions[..., 2:3]], dim=-1) * self.dt                  # (M, N, K, 3) world
        ee_traj = self._integrate(state.ee_pos.to(dtype).expand(M, N, 3), step, state.base_xy.to(dtype))
        ee_prev = torch.cat([state.ee_pos.to(dtype)[:, None].expand(M, N, 1, 3), ee_traj[:, :, :-1]], dim=2)
        closing = actions[..., 6] < self.world.cube.size                                  # (M, N, K)
        gripping = actions[..., 6] <= self.world.cube.size + self.config.hold_width_margin

        rows = torch.arange(M)
        on_table = torch.tensor([1.0, 1.0, 0.0], dtype=dtype), torch.tensor([0.0, 0.0, half_cube], dtype=dtype)
        cube_floor = torch.tensor([-torch.inf, -torch.inf, half_cube], dtype=dtype)
        cube = state.cube_pos.to(dtype).expand(M, 3)
        holder = self.initial_holder(state).expand(M)
        cube_out, holder_out = [], []
        for k in range(K):
            # (1) grasp / release on the commanded width, at the positions before the move
            keeps = (holder >= 0) & gripping[rows, holder.clamp_min(0), k]
            dist = (ee_prev[:, :, k] - cube[:, None]).norm(dim=-1)                          # (M, N)
            can_grasp = closing[:, :, k] & (dist < self.config.grasp_radius)
            grasps = ~keeps & can_grasp.any(dim=1)
            nearest = torch.where(can_grasp, dist, torch.inf).argmin(dim=1)
            holder = torch.where(keeps, holder, torch.where(grasps, nearest, -1))
            # (2)-(3) a held cube moves with its holder; a free one lies on the table
            moved = cube + (ee_traj[:, :, k] - ee_prev[:, :, k])[rows, holder.clamp_min(0)]
            cube = torch.where((holder >= 0)[:, None], torch.maximum(moved, cube_floor),
                               cube * on_table[0] + on_table[1])
            cube_out.append(cube)
            holder_out.append(holder)
        return Trajectories(ee_pos=ee_traj, cube_pos=torch.stack(cube_out, dim=1),
                            holder=torch.stack(holder_out, dim=1))

    def _integrate(self, ee: Tensor, step: Tensor, base_xy: Tensor) -> Tensor:
        """(M, N, K, 3) positions: p_{k+1} = clamp(p_k + step_k), clamped to the table box, the height
        band and each arm's horizontal reach radius (a commanded motion beyond them stops there)."""
        hx, hy = (0.5 * x for x in self.world.table.size)
        lo = torch.tensor([-hx, -hy, self.config.ee_min_height], dtype=ee.dtype)
        hi = torch.tensor([hx, hy, self.config.ee_max_height], dtype=ee.dtype)
        reach = self.world.reach.max_radius
        out = []
        for k in range(step.shape[2]):
            p = torch.minimum(torch.maximum(ee + step[:, :, k], lo), hi)
            rel = p[..., :2] - base_xy
            rel = rel * (reach / rel.norm(dim=-1, keepdim=True).clamp_min(reach))
            ee = torch.cat([base_xy + rel, p[..., 2:]], dim=-1)
            out.append(ee)
        return torch.stack(out, dim=2)
