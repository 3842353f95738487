"""J(s, a) of every receding-horizon segment of multi-arm data: the labels of the cost model's eq. 47.

The state s of a segment is rebuilt in the world frame from the arms' observations at its first step (each
arm's tool and the cube in that arm's base frame) and its episode's goal; a is the segment's joint chunk; J is
the handover cost (eq. 20, config/cost.yaml) on the kinematic cost simulator, what CoDi's guidance evaluates.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from codi_ros.config import WorldConfig
from codi_ros.core.cost import CostConfig, HandoverCost
from codi_ros.core.kinematic_model import KinematicModel, SimState
from codi_ros.data.dataset import Dataset
from codi_ros.frames import OBS_FIELDS, field_slice

_EE, _WIDTH, _CUBE = (field_slice(OBS_FIELDS, n) for n in ("ee_pos", "gripper_width", "cube_pos"))


def segment_states(ds: Dataset, world: WorldConfig) -> list[SimState]:
    """The world-frame state at every step of ``ds`` (multi-arm data: arms in world.yaml's order)."""
    if ds.num_arms != len(world.arms):
        raise ValueError(f"--data: {ds.num_arms} arm(s) per step; cost labels need multi-arm data of the "
                         f"{len(world.arms)} configured arms (codi data generate --mode multi)")
    goals = np.repeat(np.array([e["goal"] for e in ds.episodes], dtype=float),
                      np.diff(np.concatenate([[0], ds.episode_ends])), axis=0)              # (T, 3)
    frames = [world.base_frame(n) for n in world.arm_names]
    ee = np.stack([f.point_to_world(ds.obs[:, i, _EE]) for i, f in enumerate(frames)], axis=1)   # (T, N, 3)
    cube = frames[0].point_to_world(ds.obs[:, 0, _CUBE])                                    # (T, 3)
    base_xy = torch.tensor([world.arm(n).base_xy for n in world.arm_names], dtype=torch.float32)
    base_yaw = torch.tensor([world.arm(n).base_yaw for n in world.arm_names], dtype=torch.float32)
    as_t = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    return [SimState(ee_pos=as_t(ee[t]), gripper_width=as_t(ds.obs[t, :, _WIDTH][:, 0]), cube_pos=as_t(cube[t]),
                     goal=as_t(goals[t]), base_xy=base_xy, base_yaw=base_yaw) for t in range(ds.num_steps)]


def segment_costs(ds: Dataset, horizon: int, world: WorldConfig, config: CostConfig,
                  progress: bool = True) -> np.ndarray:
    """(T,) J(s_t, a_{t..t+H-1}) of the segment starting at every step (Dataset.segments' chunks)."""
    _, chunks = ds.segments(horizon)                                                       # (T, N, H, 7)
    cost = HandoverCost(config, KinematicModel(world, config.kinematic_model), world.arm_names)
    states = segment_states(ds, world)
    out = np.empty(ds.num_steps)
    for t in tqdm(range(ds.num_steps), desc="cost labels", unit="segment", disable=not progress, mininterval=2):
        out[t] = float(cost(states[t], torch.as_tensor(chunks[t:t + 1])).total[0])
    return out
