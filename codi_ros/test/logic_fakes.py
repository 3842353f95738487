"""Shared stand-ins of the tests of codi_ros.ros (the nodes' behaviour without rclpy): the shipped world,
chunks, message dicts, an arm interface and a planner that returns fixed chunks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from codi_ros.config import load_world_config
from codi_ros.control.executor import Chunk
from codi_ros.core.planner import PlanningError, PlanResult
from codi_ros.frames import ArmState, rot_z
from codi_ros.perception.fusion import Detection
from codi_ros.ros.arm_interface import ArmInterface
from codi_ros.ros.coordinator import Coordinator
from codi_ros.ros.messages import arm_state_msg, detection_msg, pose_msg
from codi_ros.sim.world import TwoArmWorld

WORLD = load_world_config()
H, DT = WORLD.horizon.prediction, WORLD.control.dt


def STILL() -> float:   # noqa: N802 (a clock that stands still: computing a trajectory takes no time)
    return 0.0


def chunk_of(twist, n: int = H, start: float = 0.0, width: float = 0.08) -> Chunk:
    return Chunk(start, DT, np.tile(np.r_[twist, width], (n, 1)))


def texts(lines) -> list[str]:
    return [t for _, t in lines]


def left_arm_interface(kinematics, world=WORLD) -> ArmInterface:
    return ArmInterface(world, "left", kinematics, compute_clock=STILL)


def state_msg(world_sim: TwoArmWorld | None = None, **overrides) -> dict:
    """A full codi_msgs/WorldState dict (from the simulator, or a fixed one)."""
    arms = []
    for arm in WORLD.arm_names:
        if world_sim is not None:
            s = world_sim.arm_state(arm)
        else:
            pos = np.array([WORLD.arm(arm).base_xy[0] * 0.5, 0.0, 0.3])
            s = ArmState(pos, rot_z(0.0), np.zeros(3), np.zeros(3), 0.08)
        arms.append(arm_state_msg(arm, s, 1.0))
    msg = {"arms": arms, "cube_pose": pose_msg(np.array([-0.3, 0.1, 0.025]), np.array([1.0, 0, 0, 0])),
           "goal": {"x": 0.3, "y": 0.0, "z": 0.025}}
    msg.update(overrides)
    return msg


def candidates_msg(c: np.ndarray) -> dict:
    return {"layout": {"dim": [{"label": n, "size": s} for n, s in zip(("candidate", "arm", "step", "action"), c.shape,
                                                                          strict=True)]},
            "data": c.ravel().tolist()}


@dataclass
class FakePlanner:
    """Returns a fixed chunk per arm; records the states it was asked about."""

    latency: float = 0.05
    fail: bool = False
    during: object = None                                  # called while "planning" (e.g. a concurrent stop)
    states: list = field(default_factory=list)

    committed: list = field(default_factory=list)
    predicted: list = field(default_factory=list)
    ramp: bool = False                                     # plan i moves at 0.05 i m/s (which plan ran is visible)
    resets: int = 0

    def reset(self) -> None:
        self.resets += 1

    def plan(self, state, overrides=None, committed=None, predicted=None, cancelled=None) -> PlanResult:
        self.states.append((state, overrides))
        self.committed.append(committed)
        self.predicted.append(predicted)
        if self.during is not None:
            self.during()
        if self.fail:
            raise PlanningError("state: cube below the table")
        vx = 0.05 * len(self.states) if self.ramp else 0.05
        chunks = {a: np.tile([vx, 0, 0, 0, 0, 0, 0.08], (H, 1)) for a in WORLD.arm_names}
        d = 0 if committed is None else len(committed["left"])
        for a in chunks if d else ():
            chunks[a][:d] = committed[a]
        return PlanResult(chunks=chunks, cost=1.5, cost_terms={"goal": 1.0, "engage": 0.5}, latency_s=self.latency,
                          committed=d)


def observe(coord: Coordinator, t: float, arms_t: float | None = None, cube_t: float | None = None, nan=False):
    for arm in WORLD.arm_names:
        pos = np.array([WORLD.arm(arm).base_xy[0] * 0.5, 0.0, math.nan if nan else 0.3])
        coord.on_arm_state(arm_state_msg(arm, ArmState(pos, np.eye(3), np.zeros(3), np.zeros(3), 0.08),
                                         t if arms_t is None else arms_t))
    coord.on_cube_detection(detection_msg(Detection("sim_truth", t if cube_t is None else cube_t,
                                                    np.array([-0.3, 0.1, 0.025]), np.array([1.0, 0, 0, 0]))))
