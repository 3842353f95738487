"""Per-arm behaviour: joint states -> arm state (arm_state_node); action chunk -> joint velocities (action_node).

The kinematics (:class:`codi_ros.control.kinematics.ArmKinematics`) and the executor
(:class:`codi_ros.control.executor.ArmExecutor`: IK, limits, workspace) are the ones ``codi eval`` and
the simulator use, in the arm's base frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from codi_ros.config import WorldConfig
from codi_ros.control.executor import ArmExecutor, ChunkError
from codi_ros.control.kinematics import ArmKinematics
from codi_ros.nodes.logic.messages import Msg, parse_chunk
from codi_ros.nodes.logic.watchdog import LogOnce, StateMonitor

ARM_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("fr3_finger_joint1", "fr3_finger_joint2")
GRIPPER_RESOLUTION = 1e-4   # m: smaller width changes are not re-sent


class JointStateReader:
    """Picks one arm's joints (and its fingers, if present) out of sensor_msgs/JointState contents.

    Arm and gripper may come in separate messages (franka_ros2 merges them, a simulator may not):
    the gripper width is the sum of the finger positions seen last, NaN until one was seen.
    """

    def __init__(self, joint_names: Sequence[str] = ARM_JOINTS, finger_names: Sequence[str] = FINGER_JOINTS):
        if len(joint_names) != 7:
            raise ValueError(f"joint_names: an FR3 has 7 joints, got {list(joint_names)}")
        self.joint_names, self.finger_names = tuple(joint_names), tuple(finger_names)
        self.q: np.ndarray | None = None
        self.qdot = np.zeros(7)
        self.gripper_width = float("nan")
        self.stamp = float("nan")
        self.fresh = False                 # new arm joints since the last `take()`

    def update(self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float], stamp: float) -> bool:
        """Read one JointState; True when it held this arm's joints."""
        index = {n: i for i, n in enumerate(names)}
        if all(n in index for n in self.finger_names):
            self.gripper_width = float(sum(position[index[n]] for n in self.finger_names))
        if not all(n in index for n in self.joint_names):
            return False
        idx = [index[n] for n in self.joint_names]
        self.q = np.array([position[i] for i in idx], dtype=float)
        self.qdot = np.array([velocity[i] for i in idx], dtype=float) if len(velocity) == len(names) else np.zeros(7)
        self.stamp, self.fresh = stamp, True
        return True

    def take(self) -> bool:
        """Whether new arm joints arrived since the last call."""
        fresh, self.fresh = self.fresh, False
        return fresh


class ArmController:
    """action_node: a chunk message -> the arm's :class:`ArmExecutor` (the one eval and the simulator run),
    with a watchdog on the joint states; ``step`` once per IK period (1 / ``control.ik_rate_hz``) of the
    measured joints: :meth:`on_joint_positions` says when."""

    def __init__(self, world: WorldConfig, arm: str, kinematics: ArmKinematics, state_timeout: float = 0.2):
        if not state_timeout > 0:
            raise ValueError(f"state_timeout must be positive, got {state_timeout}")
        self.arm = arm
        self.executor = ArmExecutor(world, arm, kinematics)
        self.monitor = StateMonitor({"joint states": state_timeout})
        self._q: np.ndarray | None = None
        self._stepped_stamp = -math.inf
        self._gripper_sent: float | None = None
        self._log = LogOnce()
        self._lines: list[tuple[str, str]] = []

    def on_joint_positions(self, q: np.ndarray, stamp: float) -> bool:
        """Take measured joints; True when a command is due: their stamp is at least half an IK period past
        the joints of the last command. Gated by the measurement's stamp, not its arrival: with a 0.9-period
        gate on arrival times, jitter skipped 28 % of the commands in the simulated graph (the executor then
        ran at ~80 Hz while its limits assume one command per period)."""
        q = np.asarray(q, dtype=float)
        self._q = q
        self.monitor.update("joint states", stamp, bool(np.all(np.isfinite(q))))
        if stamp - self._stepped_stamp < 0.5 * self.executor.dt:
            return False
        self._stepped_stamp = stamp
        return True

    def on_chunk(self, msg: Msg, now: float) -> None:
        try:
            arm, frame_id, chunk = parse_chunk(msg)
        except ChunkError as e:
            self._lines.append(("warn", f"rejected a malformed chunk: {e}"))
            return
        if arm != self.arm or frame_id not in ("", f"base_{self.arm}"):
            self._lines.append(("warn", f"rejected a chunk for arm {arm!r} in frame {frame_id!r} "
                                        f"(this is arm {self.arm!r}, frame 'base_{self.arm}')"))
            return
        self.executor.accept(chunk, now)

    def step(self, now: float) -> tuple[np.ndarray, float | None]:
        """(joint velocities (7,) to command now, a new gripper width to command or None if unchanged)."""
        problems = self.monitor.problems(now)
        qdot, width = self.executor.step(now, self._q, hold=bool(problems))
        self._lines += self._log.update(problems, context=f"arm {self.arm}: ") + self.executor.pop_events()
        if width is not None and (self._gripper_sent is None or abs(width - self._gripper_sent) > GRIPPER_RESOLUTION):
            self._gripper_sent = width
        else:
            width = None
        return qdot, width

    def pop_log(self) -> list[tuple[str, str]]:
        lines, self._lines = self._lines, []
        return lines
