"""Per-arm behaviour: joint states -> arm state (arm_state_node); action chunk -> joint trajectory and
gripper goals (action_node).

The kinematics (:class:`codi_ros.control.kinematics.ArmKinematics`) and the executor
(:class:`codi_ros.control.executor.ArmExecutor`: IK, limits, workspace) are the ones ``codi eval`` and
the simulator use, in the arm's base frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from codi_ros.config import WorldConfig
from codi_ros.control.executor import ArmExecutor, ChunkError
from codi_ros.control.gripper import GripperCommander, GripperGoal
from codi_ros.control.kinematics import ArmKinematics
from codi_ros.control.trajectory import JointTrajectory
from codi_ros.robot.fr3 import FINGER_JOINTS
from codi_ros.ros.messages import Msg, parse_chunk
from codi_ros.ros.watchdog import LogOnce, StateMonitor

DELIVERY_MARGIN_S = 0.02    # s: a trajectory's first point is due this long after the chunk that made it arrived


class JointStateReader:
    """Picks one arm's joints (and its fingers, if present) out of sensor_msgs/JointState contents.

    Arm and gripper may come in separate messages (franka_ros2 merges them, a simulator may not):
    the gripper width is the sum of the finger positions seen last, NaN until one was seen.
    """

    def __init__(self, joint_names: Sequence[str], finger_names: Sequence[str] = FINGER_JOINTS):
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


class ArmInterface:
    """action_node: chunk messages -> the arm's :class:`ArmExecutor` (the one eval and the simulator run)
    -> one joint trajectory per accepted chunk, for the arm's trajectory controller, and the franka_gripper
    goals of the widths it commands (:class:`GripperCommander`); with a watchdog on the joint states (stale
    or NaN: stop, and a trajectory that brings the arm to rest; the hand keeps its grip).

    A trajectory starts ``DELIVERY_MARGIN_S`` after the chunk arrived (it must reach the controller before
    its first point is due); up to there the executor runs what it already sent."""

    def __init__(self, world: WorldConfig, arm: str, kinematics: ArmKinematics, state_timeout: float = 0.2):
        if not state_timeout > 0:
            raise ValueError(f"state_timeout must be positive, got {state_timeout}")
        self.arm = arm
        self.executor = ArmExecutor(world, arm, kinematics)
        self.monitor = StateMonitor({"joint states": state_timeout})
        self._q: np.ndarray | None = None
        self._qdot: np.ndarray | None = None
        self._stopped = False              # stopped for the joint states' sake (until they are fine again)
        self.gripper = GripperCommander(world)
        self._sent: JointTrajectory | None = None   # the last trajectory sent: its widths are the gripper's wishes
        self._log = LogOnce()
        self._lines: list[tuple[str, str]] = []

    def on_joint_positions(self, q: np.ndarray, stamp: float, velocities: np.ndarray | None = None) -> None:
        """Measured joint positions (and velocities: a trajectory's prediction of the arm starts from them)."""
        q = np.asarray(q, dtype=float)
        finite = bool(np.all(np.isfinite(q)))
        self.monitor.update("joint states", stamp, finite)
        if finite:
            self._q, self._qdot = q, None if velocities is None else np.asarray(velocities, dtype=float)

    def on_chunk(self, msg: Msg, now: float) -> JointTrajectory | None:
        """The trajectory to send for a chunk message, or None (refused, with a logged reason)."""
        try:
            arm, frame_id, chunk = parse_chunk(msg)
        except ChunkError as e:
            self._lines.append(("warn", f"rejected a malformed chunk: {e}"))
            return None
        if arm != self.arm or frame_id not in ("", f"base_{self.arm}"):
            self._lines.append(("warn", f"rejected a chunk for arm {arm!r} in frame {frame_id!r} "
                                        f"(this is arm {self.arm!r}, frame 'base_{self.arm}')"))
            return None
        if self._q is None:
            self._lines.append(("warn", "rejected a chunk: no joint states yet"))
            return None
        if self.monitor.problems(now) and len(chunk.actions):
            self._lines.append(("warn", "rejected a chunk: the joint states are stale or NaN (holding)"))
            return None
        start = now + DELIVERY_MARGIN_S   # the chunk reaches the arm then: the executor takes it as of then
        self.executor.advance_to(start)
        if not self.executor.accept(chunk, start):
            self._lines += self.executor.pop_events()
            return None
        return self._trajectory(start)

    def check(self, now: float) -> JointTrajectory | None:
        """The watchdog, every few tens of ms: on stale or NaN joint states, stop and return the trajectory
        that brings the arm to rest (once per fault); else None."""
        problems = self.monitor.problems(now)
        self._lines += self._log.update(problems, context=f"arm {self.arm}: ")
        if not problems:
            self._stopped = False
            return None
        if self._stopped or self._q is None:
            return None
        self._stopped = True
        start = now + DELIVERY_MARGIN_S
        self.executor.advance_to(start)
        self.executor.stop(start)
        return self._trajectory(start)

    def _trajectory(self, start: float) -> JointTrajectory:
        trajectory = self.executor.trajectory(start, self._q, self._qdot)
        self._lines += self.executor.pop_events()
        self._sent = trajectory
        return trajectory

    def gripper_goal(self, now: float) -> GripperGoal | None:
        """The gripper goal to send now, if any, for the width the trajectory sent commands now (call it every
        few tens of ms)."""
        goal = self.gripper.command(None if self._sent is None else self._sent.sample(now)[2], now)
        self._lines += self.gripper.pop_log()
        return goal

    def gripper_result(self, seq: int, success: bool, error: str, now: float) -> GripperGoal | None:
        """Gripper goal ``seq`` ended: the goal to send now, if any."""
        goal = self.gripper.finished(seq, success, error, now)
        self._lines += self.gripper.pop_log()
        return goal

    def pop_log(self) -> list[tuple[str, str]]:
        lines, self._lines = self._lines, []
        return lines
