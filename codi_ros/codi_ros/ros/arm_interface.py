"""Per-arm behaviour: joint states -> arm state (arm_state_node); action chunk -> joint trajectory and
gripper goals (action_node).

The kinematics (:class:`codi_ros.control.kinematics.ArmKinematics`) and the executor
(:class:`codi_ros.control.executor.ArmExecutor`: IK, limits, workspace) are the ones ``codi eval`` and
the simulator use, in the arm's base frame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from codi_ros.config import WorldConfig
from codi_ros.control.executor import ArmExecutor, ChunkError
from codi_ros.control.gripper import GripperCommander, GripperGoal
from codi_ros.control.kinematics import ArmKinematics
from codi_ros.control.trajectory import JointTrajectory
from codi_ros.robot.fr3 import FINGER_JOINTS, RobotMode
from codi_ros.ros.messages import Msg, parse_chunk
from codi_ros.ros.watchdog import LogOnce, StateMonitor

MOVED_AT_REST_RAD = 0.1   # an arm at rest measured this far from its held command was moved without us: resync
SEND_LEAD_S = 0.05    # s: a trajectory's first point is at least this far ahead when it is sent (the way to the
                      # controller: a simulator beside the planner on 2 cores takes it up to tens of ms late)


def robot_mode_fault(mode: int) -> str:
    """Why an arm in franka's robot ``mode`` (FrankaRobotState.robot_mode) cannot move; "" when it can."""
    return {RobotMode.REFLEX: "reflex", RobotMode.USER_STOPPED: "user stop"}.get(mode, "")


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

    A trajectory starts the world's ``executor.delivery_margin`` after the chunk arrived: it must reach the
    controller before its first point is due (a trajectory controller starts a late one part-way, a jump the
    FR3 aborts on); up to there the executor runs what it already sent. A chunk whose trajectory is computed
    later than that is dropped (the executor goes back to where it was: the controller runs on in what it has,
    which ends at rest); a late stop loses its points already due (:meth:`_trajectory`)."""

    def __init__(self, world: WorldConfig, arm: str, kinematics: ArmKinematics, state_timeout: float = 0.2,
                 compute_clock: Callable[[], float] = time.perf_counter):
        """``compute_clock``: measures how long a trajectory takes to compute (a test's stands still)."""
        if not state_timeout > 0:
            raise ValueError(f"state_timeout must be positive, got {state_timeout}")
        self.delivery_margin, self._compute_clock = world.executor.delivery_margin, compute_clock
        self.arm = arm
        self.executor = ArmExecutor(world, arm, kinematics)
        self.monitor = StateMonitor({"joint states": state_timeout})
        self._q: np.ndarray | None = None
        self._qdot: np.ndarray | None = None
        self._q_stamp = math.nan
        self._gripper_width = math.nan     # the fingers' measured width, m
        self._stopped = False              # stopped for the joint states' sake (until they are fine again)
        self.gripper = GripperCommander(world)
        self._sent: JointTrajectory | None = None   # the last trajectory sent: its widths are the gripper's wishes
        self._log = LogOnce()
        self._lines: list[tuple[str, str]] = []
        self.compute_s = 0.0                # the last trajectory's computation time, s
        self._late_log = LogOnce()

    def on_joint_positions(self, q: np.ndarray, stamp: float, velocities: np.ndarray | None = None,
                           gripper_width: float = math.nan) -> None:
        """Measured joint positions (and velocities: a trajectory's prediction of the arm starts from them; the
        fingers' width: the gripper commander sees a lost grasp)."""
        self._gripper_width = float(gripper_width)
        q = np.asarray(q, dtype=float)
        finite = bool(np.all(np.isfinite(q)))
        self.monitor.update("joint states", stamp, finite)
        if finite:
            self._q, self._qdot = q, None if velocities is None else np.asarray(velocities, dtype=float)
            self._q_stamp = stamp

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
        start = now + self.delivery_margin   # the trajectory reaches the arm before: the executor takes it then
        self.executor.advance_to(start)
        resting = self._resting(now)
        moved = 0.0 if self.executor.q_cmd is None else float(np.abs(self._q - self.executor.q_cmd).max())
        if resting and moved > MOVED_AT_REST_RAD:
            self._lines.append(("warn", f"arm {self.arm}: {moved:.3f} rad from where it was held (moved by another "
                                        "controller or a simulator reset): the next motion starts where it is"))
            self.executor.q_cmd, self._sent = self._q.copy(), None
        before = self.executor.snapshot()
        if not self.executor.accept(chunk, start):
            self._lines += self.executor.pop_events()
            return None
        if resting and not len(chunk.actions):
            return None                    # a stop with nothing running: the controller holds the arm already
        trajectory = self._trajectory(start, droppable=len(chunk.actions) > 0)
        if trajectory is None:
            self.executor.restore(before)
        return trajectory

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
        if self._resting(now):
            return None                    # nothing running: the controller holds the arm already
        start = now + self.delivery_margin
        self.executor.advance_to(start)
        self.executor.stop(start)
        return self._trajectory(start)

    def _resting(self, now: float) -> bool:
        """Nothing runs: the executor is at rest and the last trajectory sent (which ends at rest) has ended."""
        return self.executor.at_rest and (self._sent is None or self._sent.end <= now)

    def resync(self) -> None:
        """The arm's controller was restarted (error recovery): forget what was sent and executed; the next
        chunk starts from the measured joints, where the controller holds the arm."""
        self.executor.reset()
        if self._q is not None:
            self.executor.sync(self._q)
        self._sent, self._stopped = None, False
        self._lines.append(("info", f"arm {self.arm}: recovered; holding at the measured joints"))

    def _trajectory(self, start: float, droppable: bool = False) -> JointTrajectory | None:
        """The executor's trajectory from ``start``, after the points of the one sent before it from now
        (``start - delivery_margin``) on: what the executor runs until ``start`` is what it sent, so the
        controller, taking the new trajectory at any moment before ``start``, runs on without a join. One that
        took longer to compute than ``start`` allowed would reach the controller after points already due, which
        it would join to the motion it runs with a jump (a simulated reflex in the graph): a ``droppable`` one
        (a chunk's) is not sent (None; the caller restores the executor), a stop loses the points already due."""
        now = start - self.delivery_margin
        tic = self._compute_clock()
        trajectory = self.executor.trajectory(start, *self._predicted())
        self._lines += self.executor.pop_events()
        self.compute_s = self._compute_clock() - tic
        sent_at = now + self.compute_s
        if sent_at + SEND_LEAD_S > trajectory.start:
            what = "chunks dropped" if droppable else "stops sent without their points already due"
            self._lines += self._late_log.update({"late": f"trajectories computed late (last: {self.compute_s:.3f} s, "
                                                          f"margin {self.delivery_margin:.3f} s): {what}, the arm "
                                                          "runs on in what it has (world.yaml "
                                                          "executor.delivery_margin)"}, context=f"arm {self.arm}: ")
            if droppable:
                return None
            trajectory = trajectory.after(sent_at + SEND_LEAD_S)
        else:
            self._lines += self._late_log.update({})
            if self._sent is not None:
                trajectory = trajectory.following(self._sent, now)
        self._sent = trajectory
        return trajectory

    def _predicted(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The measured joints carried to the executor's next step (where its trajectory starts, a delivery
        margin after the measurement and more): its commanded positions and velocities there plus the tracking
        error at the measurement (measured minus what the sent trajectory commanded then). Not the bare
        measurement: it is a fifth of a second behind the commands, which the executor would take for a
        blocked arm (``MAX_TARGET_LEAD``) and jump."""
        if self.executor.q_cmd is None:    # nothing commanded yet: the measurement seeds the commands
            return self._q, self._qdot
        if self._sent is None:
            commanded_q, commanded_v = self.executor.q_cmd, np.zeros(7)
        else:
            commanded_q, commanded_v, _ = self._sent.sample(self._q_stamp)
        q = self.executor.q_cmd + (self._q - commanded_q)
        qdot = None if self._qdot is None else self.executor.limiter.last + (self._qdot - commanded_v)
        return q, qdot

    def gripper_goal(self, now: float) -> GripperGoal | None:
        """The gripper goal to send now, if any, for the width the trajectory sent commands now (call it every
        few tens of ms)."""
        goal = self.gripper.command(None if self._sent is None else self._sent.sample(now)[2], now, self._gripper_width)
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
