"""sim_node's behaviour: the MuJoCo world in real time behind the interfaces the real arms have.

Commands arrive like a ros2_control JointTrajectoryController's: a trajectory_msgs/JointTrajectory of
the 7 arm joints per arm (named as franka_bringup's ``arm_prefix`` names them: ``left_fr3_joint1``), which
the controller takes on arrival and splines at the FR3's 1 kHz
(:class:`~codi_ros.control.trajectory.TrajectoryFollower`). That 1 kHz command stream is checked as the
FR3's motion generator checks it (:class:`~codi_ros.control.smoothness.MotionGeneratorCheck`, the FR3's
own limits): beyond them the arm
has a reflex (:class:`SimulatedFranka`: it stops where it is, its hardware component is in error and its
controller inactive) until franka's error recovery, the component's reactivation and the controller's,
in that order, as on the real arms. The hand takes franka_gripper's blocking goals on the world's own
:class:`~codi_ros.sim.hand.SimulatedHand` (move, grasp, homing), the hand ``codi eval`` drives in-process.
Joint states (arm and fingers, each finger half the width) go out like franka_ros2's merged
joint_states. Every trajectory the action nodes send ends at rest, so an arm whose action node dies
stops at the end of what it was sent. Wrist images come with an ideal pinhole CameraInfo; the hand-eye
calibration the aruco nodes need is :func:`camera_in_tcp`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from codi_ros.control.smoothness import MotionGeneratorCheck
from codi_ros.control.trajectory import TrajectoryError
from codi_ros.frames import mat_to_quat
from codi_ros.perception.aruco import invert, make_transform
from codi_ros.perception.fusion import Detection
from codi_ros.robot.fr3 import (
    FINGER_JOINTS,
    JOINT_ACCELERATION_LIMIT,
    JOINT_JERK_LIMIT,
    JOINT_VELOCITY_LIMIT,
    RobotMode,
    arm_joint_names,
)
from codi_ros.ros.messages import Msg, detection_msg, header, parse_trajectory
from codi_ros.ros.watchdog import LogOnce
from codi_ros.sim.tasks import HandoverTask
from codi_ros.sim.world import TwoArmWorld

CONTINUITY_TOL_RAD = 1e-5  # a trajectory taken after its first point continues the running motion within this
LAG_REPORT_HOLD_S = 5.0   # a skip ahead stays one reported problem until none has happened for this long
MUJOCO_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])   # MuJoCo cameras look along -z with y up; OpenCV: +z, y down


@dataclass
class SimulatedFranka:
    """One arm's franka_ros2 as far as recovery goes: the robot (in a reflex or not), its ros2_control
    hardware component and its trajectory controller (active or not)."""

    check: MotionGeneratorCheck
    reflex: str = ""                  # why the robot stopped ("" while it has not)
    component_active: bool = True
    controller_active: bool = True
    violations: int = 0               # commands beyond the FR3's limits (each a reflex, when simulated)
    late: int = 0                     # trajectories taken after their first point, not continuing the motion
    received: str = ""                # how the last trajectory was taken (for the reflex report)

    @property
    def mode(self) -> RobotMode:
        return RobotMode.REFLEX if self.reflex else RobotMode.MOVE if self.controller_active else RobotMode.IDLE


def _continues(trajectory, follower, t: float) -> bool:
    """Whether ``trajectory`` at time t is the motion ``follower`` commands then (a trajectory sent after the
    points of the one before it: the controller runs on without a jump). Within CONTINUITY_TOL_RAD: the
    trajectories' times are wall-clock seconds since 1970, which a float resolves to 0.24 us."""
    running = follower.positions(np.array([t - 1e-3, t]))
    if running is None:
        return False
    new = trajectory.sample_many(np.array([t - 1e-3, t]))[0]
    return bool(np.abs(new - running).max() < CONTINUITY_TOL_RAD)


class SimBridge:
    def __init__(self, world: TwoArmWorld, max_lag: float = 0.1, reflexes: bool = True):
        """``reflexes``: a command beyond the FR3's limits stops the arm (False: it is counted and logged,
        ``SimulatedFranka.violations``, and the arm goes on)."""
        self.reflexes = reflexes
        self.world = world
        self.ik_dt = 1.0 / world.cfg.control.ik_rate_hz
        self.max_lag = max_lag
        # the world's time minus the wall time it stands for: fixed from one skip ahead to the next, so that every
        # trajectory (wall clock) lands at the same world times (a running sum of the steps at epoch scale, 2e-7 s
        # apart, moved the points of one trajectory against the copy of them in the next by ~1e-7 s: up to
        # 1 rad/s^2 more at 1 kHz)
        self._offset: float | None = None
        self._reset_at = -math.inf                # wall time of the last episode reset
        self._log = LogOnce()
        self._lines: list[tuple[str, str]] = []
        self._lag, self._lagging_until = 0.0, -math.inf   # the last skip ahead, and until when it is reported
        self.robots = {a: SimulatedFranka(MotionGeneratorCheck(JOINT_VELOCITY_LIMIT, JOINT_ACCELERATION_LIMIT,
                                                               JOINT_JERK_LIMIT, world.cfg.control.servo_rate_hz))
                       for a in world.cfg.arm_names}

    def reset(self, task: HandoverTask, seed: int, index: int, now: float = -math.inf) -> None:
        """Episode ``index`` of ``task`` with ``seed``: the same start ``codi eval`` gives that episode, at wall
        time ``now`` (trajectories that start before it belong to the episode before: ignored)."""
        self._reset_at = now
        task.reset(self.world, seed, index)
        self._offset = None
        for arm, robot in self.robots.items():       # a new episode starts with healthy arms
            robot.reflex, robot.component_active, robot.controller_active = "", True, True
            robot.check.reset(self.world.joint_positions(arm))

    def command_trajectory(self, arm: str, msg: Msg, now: float) -> None:
        """A JointTrajectory message (wall clock) for the arm's simulated trajectory controller, arriving at wall
        time ``now``. The world first catches up to ``now`` (:meth:`advance`): a controller takes a trajectory
        when it arrives, and the simulation's clock stands where its last step left it, up to ``max_lag`` behind
        on a busy machine. Joined at that earlier time, a trajectory that continues the running one from the
        action node's present would be splined over a stretch the running one already commanded, with other
        accelerations (up to 10.04 rad/s^2 at 1 kHz where the executor commanded 9: the graph's reflexes)."""
        self.advance(now)
        try:
            trajectory = parse_trajectory(msg, arm_joint_names(arm))
        except TrajectoryError as e:
            self._lines.append(("warn", f"arm {arm}: ignoring a joint trajectory: {e}"))
            return
        if trajectory.start < self._reset_at:
            self._lines.append(("warn", f"arm {arm}: ignoring a joint trajectory that starts before the episode "
                                        f"reset ({self._reset_at - trajectory.start:.3f} s): the arms moved since"))
            return
        if not self.robots[arm].controller_active:
            self._lines.append(("warn", f"arm {arm}: ignoring a joint trajectory: joint_trajectory_controller is "
                                        f"inactive ({self.robots[arm].reflex or 'deactivated'}; /codi/recover)"))
            return
        if self._offset is not None:
            trajectory = trajectory.shifted(self._offset)
            now, follower = self.world.time, self.world.arms[arm].follower
            self.robots[arm].received = f"last trajectory taken {trajectory.start - now:+.3f} s before its first point"
            if trajectory.start < now and not _continues(trajectory, follower, now):
                self.robots[arm].late += 1   # the controller samples it part-way: a jump, which the check sees
            self.world.follow(arm, trajectory)

    def advance(self, now: float) -> float:
        """Step the physics up to wall time ``now`` in whole IK periods; the simulated seconds stepped."""
        if self._offset is None:
            self._offset = self.world.time - now
            return 0.0
        lag = now - (self.world.time - self._offset)
        if lag > self.max_lag:
            self._lagging_until = now + LAG_REPORT_HOLD_S
            self._offset, lag, self._lag = self.world.time - (now - self.ik_dt), self.ik_dt, lag
            for name, arm in self.world.arms.items():   # the world's clock fell behind the wall's: so do their
                arm.follower.shift(self.ik_dt - self._lag)   # times, and the 1 kHz check goes on from the shifted
                recent = arm.follower.positions(self.world.time + np.array([-2e-3, -1e-3, 0.0]))   # commands
                self.robots[name].check.restart(recent)
        slow = ({"lag": f"simulation {self._lag:.2f} s behind real time: skipping ahead"}
                if now <= self._lagging_until else {})
        self._lines += self._log.update(slow)
        n = math.floor(lag / self.ik_dt + 1e-9)
        if n > 0:
            t0 = self.world.time
            self.world.step(n * self.ik_dt)
            self._check_servo(t0, n * self.ik_dt)
        return n * self.ik_dt

    def _check_servo(self, t0: float, seconds: float) -> None:
        """The FR3's check of each arm's 1 kHz commands over (t0, t0 + seconds]; a violation is a reflex."""
        hz = self.world.cfg.control.servo_rate_hz
        ts = t0 + np.arange(1, int(round(seconds * hz)) + 1) / hz
        for arm, robot in self.robots.items():
            commands = self.world.arms[arm].follower.positions(ts)
            if robot.reflex or commands is None:
                continue
            problem = robot.check.check(commands)
            if problem:
                robot.violations += 1
            if problem and not self.reflexes:
                robot.check.restart(commands[-3:] if len(commands) >= 3 else np.repeat(commands[-1:], 3, 0))
                self._lines.append(("warn", f"arm {arm}: the FR3 would abort here ({problem}; {robot.received})"))
            elif problem:
                self.world.hold(arm)
                robot.check.reset(self.world.joint_positions(arm))   # the brakes' stop is no command
                robot.reflex, robot.component_active, robot.controller_active = problem, False, False
                self._lines.append(("error", f"arm {arm}: reflex ({problem}; {robot.received}): the arm stopped; its "
                                             "hardware component is in error and its controller inactive until "
                                             "/codi/recover"))

    def pop_motion(self) -> dict[str, dict]:
        """Per arm since the last call: the peaks of its 1 kHz commands (velocity, acceleration, jerk), the
        commands beyond the FR3's limits and the trajectories taken after their first point that jump; then zeroed."""
        report = {}
        for arm, robot in self.robots.items():
            report[arm] = {"peaks": {k: round(v, 3) for k, v in robot.check.peaks.items()},
                           "violations": robot.violations, "late_trajectories": robot.late}
            robot.check.peaks = dict.fromkeys(robot.check.peaks, 0.0)
            robot.violations = robot.late = 0
        return report

    def error_recovery(self, arm: str) -> tuple[bool, str]:
        """franka_msgs/action/ErrorRecovery: the robot leaves its reflex (libfranka's automaticErrorRecovery)."""
        self.robots[arm].reflex = ""
        return True, ""

    def set_component_active(self, arm: str, active: bool) -> tuple[bool, str]:
        """controller_manager's set_hardware_component_state for the arm's component (active or inactive)."""
        robot = self.robots[arm]
        if active and robot.reflex:
            return False, f"the robot is in a reflex ({robot.reflex}): error recovery first"
        robot.component_active = active
        robot.controller_active = robot.controller_active and active
        return True, ""

    def switch_controller(self, arm: str, activate: bool) -> tuple[bool, str]:
        """controller_manager's switch_controller for the arm's joint_trajectory_controller; on activation it
        holds where the arm is (set_last_command_interface_value_as_state_on_activation)."""
        robot = self.robots[arm]
        if activate and not robot.component_active:
            return False, "its hardware component is not active"
        if activate and not robot.controller_active:
            self.world.hold(arm)
            robot.check.reset(self.world.joint_positions(arm))
        robot.controller_active = activate
        return True, ""

    def joint_state(self, arm: str) -> tuple[list[str], list[float], list[float]]:
        """(names, positions, velocities) of the 7 arm joints and the 2 fingers (each half the width)."""
        half = self.world.gripper_width(arm) / 2
        return ([*arm_joint_names(arm), *FINGER_JOINTS], [*self.world.joint_positions(arm).tolist(), half, half],
                [*self.world.joint_velocities(arm).tolist(), 0.0, 0.0])

    def truth_detection(self, now: float) -> dict:
        """The true cube pose as a CubeDetection (source "sim_truth"), for runs without camera images."""
        cube = self.world.cube_state()
        return detection_msg(Detection("sim_truth", now, cube.pos, cube.quat))

    def pop_log(self) -> list[tuple[str, str]]:
        lines, self._lines = self._lines, []
        return lines


def pinhole_k(width: int, height: int, fovy_deg: float) -> np.ndarray:
    """Intrinsics of a MuJoCo camera (square pixels, principal point at the image centre)."""
    f = (height / 2) / math.tan(math.radians(fovy_deg) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def camera_info_msg(stamp: float, frame_id: str, width: int, height: int, fovy_deg: float) -> dict:
    """sensor_msgs/CameraInfo of an ideal (distortion-free) pinhole camera."""
    K = pinhole_k(width, height, fovy_deg)
    return {"header": header(stamp, frame_id), "height": height, "width": width, "distortion_model": "plumb_bob",
            "d": [0.0] * 5, "k": K.ravel().tolist(), "r": np.eye(3).ravel().tolist(),
            "p": np.hstack([K, np.zeros((3, 1))]).ravel().tolist()}


def camera_in_tcp(world: TwoArmWorld, arm: str) -> tuple[np.ndarray, np.ndarray]:
    """Hand-eye calibration of the simulated wrist camera: (translation, quaternion (x, y, z, w)) of
    the OpenCV optical frame in the tool (tcp site) frame."""
    m, d = world.model, world.data
    cam = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, f"wrist_{arm}")
    T_world_cam = make_transform(d.cam_xmat[cam].reshape(3, 3) @ MUJOCO_TO_OPTICAL, d.cam_xpos[cam])
    tcp = world.arms[arm].tcp
    T = invert(make_transform(d.site_xmat[tcp].reshape(3, 3), d.site_xpos[tcp])) @ T_world_cam
    return T[:3, 3], np.roll(mat_to_quat(T[:3, :3]), -1)


def camera_fovy(world: TwoArmWorld, camera: str) -> float:
    return float(world.model.cam_fovy[mujoco.mj_name2id(world.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)])
