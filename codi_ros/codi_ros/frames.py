"""Frames, world-state types and the per-arm observation/action layout (paper f_single, Sec. IV).

Every arm sees the world in its own base frame ``base_<name>`` (origin at the base axis on the
table top, x across the table towards the other arm, z up). Because the two bases face each
other, a scene rotated by 180 degrees about the table centre gives the right arm exactly the
observation the left arm had, so one shared policy serves both (the paper's homogeneous agents).

Pure numpy, no MuJoCo, no ROS: used by the simulator, the planner and the nodes alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Observation of one arm, in its base frame. ``cube_yaw4`` = (cos 4psi, sin 4psi) of the cube's
# yaw psi relative to the base: a cube looks the same every 90 degrees, so this is its yaw
# modulo the symmetry. ``cube_rel`` = cube_pos - ee_pos and ``cube_yaw_rel4`` = (cos 4d, sin 4d) of
# the cube's yaw relative to the tool's, d = psi - tool yaw, are redundant, but they are what a grasp
# needs: the expert turns the tool by the wrapped d (sin 4d ~ 4d near alignment), which a small
# network learns far more easily than from the absolute rotation and cube yaw.
OBS_FIELDS: tuple[tuple[str, int], ...] = (
    ("ee_pos", 3), ("ee_rot6d", 6), ("ee_linvel", 3), ("ee_angvel", 3),
    ("gripper_width", 1), ("cube_pos", 3), ("cube_yaw4", 2), ("cube_rel", 3), ("cube_yaw_rel4", 2),
)
OBS_DIM = sum(n for _, n in OBS_FIELDS)
# One action (one step of a chunk): commanded end-effector twist in the base frame + gripper width.
ACTION_FIELDS: tuple[tuple[str, int], ...] = (("ee_linvel", 3), ("ee_angvel", 3), ("gripper_width", 1))
ACT_DIM = sum(n for _, n in ACTION_FIELDS)


def field_slice(fields: tuple[tuple[str, int], ...], name: str) -> slice:
    start = 0
    for n, size in fields:
        if n == name:
            return slice(start, start + size)
        start += size
    raise KeyError(name)


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    """(w, x, y, z) unit quaternion -> 3x3 rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def mat_to_quat(m: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> (w, x, y, z) quaternion with w >= 0."""
    m = np.asarray(m, dtype=float)
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q if q[0] >= 0 else -q


def yaw_of(m: np.ndarray) -> float:
    """Yaw of a rotation matrix's x axis projected on the horizontal plane."""
    return float(np.arctan2(m[1, 0], m[0, 0]))


def tool_down(yaw: float) -> np.ndarray:
    """Top-down tool orientation whose x axis has world yaw ``yaw``."""
    return rot_z(yaw) @ np.diag([1.0, -1.0, -1.0])


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) rotating ``current`` onto ``target``."""
    r = target @ current.T
    angle = math.acos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    n = np.linalg.norm(axis)
    return axis / n * angle if n > 1e-9 else np.zeros(3)


@dataclass(frozen=True)
class BaseFrame:
    """Pose of an arm base on the table top: world_p = R(yaw) base_p + (x, y, 0)."""

    xy: tuple[float, float]
    yaw: float

    @property
    def rotation(self) -> np.ndarray:
        return rot_z(self.yaw)

    @property
    def origin(self) -> np.ndarray:
        return np.array([self.xy[0], self.xy[1], 0.0])

    def point_to_base(self, p_world: np.ndarray) -> np.ndarray:
        return (np.asarray(p_world) - self.origin) @ self.rotation  # R^T (p - o), batched on rows

    def point_to_world(self, p_base: np.ndarray) -> np.ndarray:
        return np.asarray(p_base) @ self.rotation.T + self.origin

    def vec_to_base(self, v_world: np.ndarray) -> np.ndarray:
        return np.asarray(v_world) @ self.rotation

    def vec_to_world(self, v_base: np.ndarray) -> np.ndarray:
        return np.asarray(v_base) @ self.rotation.T


@dataclass
class ArmState:
    """One arm's end-effector state in the world frame (what ``arm_state_node`` publishes)."""

    ee_pos: np.ndarray        # (3,)
    ee_rot: np.ndarray        # (3, 3) tool orientation; z axis points out of the fingers
    ee_linvel: np.ndarray     # (3,)
    ee_angvel: np.ndarray     # (3,)
    gripper_width: float      # distance between the fingers, m


@dataclass
class CubeState:
    pos: np.ndarray           # (3,) centre, world frame
    quat: np.ndarray          # (4,) (w, x, y, z)


@dataclass
class WorldState:
    """Everything a plan is made from, world frame: the joint state s of the paper."""

    arms: dict[str, ArmState]  # keyed by arm name, in the config's arm order
    cube: CubeState
    goal: np.ndarray           # (3,) task goal for the cube
    stamp: float = 0.0         # seconds (ROS time or sim time) of the oldest ingredient


def state_is_finite(state: ArmState | CubeState | WorldState) -> bool:
    """True when no field holds NaN or inf (a WorldState checks its arms, cube and goal)."""
    if isinstance(state, WorldState):
        return (all(state_is_finite(a) for a in state.arms.values()) and state_is_finite(state.cube)
                and bool(np.all(np.isfinite(state.goal))))
    return bool(all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in vars(state).values()))


def observe(arm: ArmState, cube: CubeState, frame: BaseFrame) -> np.ndarray:
    """f_single: the ego arm's observation (OBS_DIM,) in its own base frame, float32."""
    ee_pos = frame.point_to_base(arm.ee_pos)
    ee_rot = frame.rotation.T @ np.asarray(arm.ee_rot)
    cube_pos = frame.point_to_base(cube.pos)
    cube_yaw = yaw_of(quat_to_mat(cube.quat)) - frame.yaw
    rel_yaw = cube_yaw - yaw_of(ee_rot)
    return np.concatenate([
        ee_pos,
        ee_rot[:, :2].T.ravel(),              # first two columns: the 6-D rotation representation
        frame.vec_to_base(arm.ee_linvel),
        frame.vec_to_base(arm.ee_angvel),
        [arm.gripper_width],
        cube_pos,
        [np.cos(4 * cube_yaw), np.sin(4 * cube_yaw)],
        cube_pos - ee_pos,
        [np.cos(4 * rel_yaw), np.sin(4 * rel_yaw)],
    ]).astype(np.float32)
