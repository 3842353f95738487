"""The simulated two-arm world: MuJoCo physics behind the same interface the real arms get.

Each arm is driven either by its :class:`~codi_ros.control.executor.ArmExecutor` (``execute`` a
time-stamped chunk, or ``apply_action`` one action for one control period), the same executor the
ROS action nodes run, stepped at ``ik_rate_hz``; or, as the simulated graph's driver, by joint
trajectories from outside (``follow``: the simulated trajectory controller, which takes a new
trajectory at once, joined to what it commands then). Either way each IK period's commanded joint
positions (the position due at the period's end) are the targets of the menagerie position servos, never more than
``MAX_TARGET_LEAD`` ahead of the measured joints, and the commanded gripper widths become franka_gripper goals on
the arm's simulated hand (:mod:`codi_ros.sim.hand`), the simulated graph's path too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from codi_ros.config import WorldConfig
from codi_ros.control.executor import MAX_TARGET_LEAD, ArmExecutor, Chunk, Events
from codi_ros.control.kinematics import ArmKinematics
from codi_ros.control.trajectory import JointTrajectory, TrajectoryFollower
from codi_ros.frames import ArmState, CubeState, observe
from codi_ros.robot.fr3 import FINGER_JOINTS, FINGER_RANGE, arm_joint_names
from codi_ros.sim.hand import HandClient, SimulatedHand
from codi_ros.sim.scene import CUBE_FACES, build_scene_xml


def _png(image: np.ndarray) -> bytes:
    import io

    import imageio.v3 as iio
    buf = io.BytesIO()
    iio.imwrite(buf, np.ascontiguousarray(image, dtype=np.uint8), extension=".png")
    return buf.getvalue()


@dataclass
class _Arm:
    """Indices of one arm in the MuJoCo model, and its current command."""

    name: str
    qadr: np.ndarray
    dofadr: np.ndarray
    actuators: np.ndarray
    gripper_actuator: int
    finger_qadr: np.ndarray
    tcp: int
    geoms: set[int]
    driven: bool = False                            # by its executor (else by its follower, if active)
    follower: TrajectoryFollower = field(default_factory=TrajectoryFollower)
    q_target: np.ndarray = field(default_factory=lambda: np.zeros(7))


class TwoArmWorld:
    """Table, N arms (two by default), a cube and a goal marker; see ``config/world.yaml``."""

    def __init__(self, cfg: WorldConfig, cube_faces: dict[str, np.ndarray] | None = None):
        """``cube_faces``: optional images (H, W[, 3]) uint8 per MuJoCo cube face (right, left, up, down,
        front, back) textured onto the cube, e.g. its ArUco markers for the wrist cameras."""
        self.cfg = cfg
        assets = {f"cube_{face}.png": _png(img) for face, img in (cube_faces or {}).items()}
        if cube_faces is not None and set(cube_faces) != set(CUBE_FACES):
            raise ValueError(f"cube_faces needs exactly the faces {CUBE_FACES}, got {sorted(cube_faces)}")
        self.model = mujoco.MjModel.from_xml_string(build_scene_xml(cfg, cube_texture=bool(assets)), assets)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.arms: dict[str, _Arm] = {}
        for a in cfg.arms:
            p = f"{a.name}_"
            bodies = {b for b in range(m.nbody) if m.body(b).name.startswith(p)}
            self.arms[a.name] = _Arm(
                name=a.name,
                qadr=np.array([m.joint(j).qposadr[0] for j in arm_joint_names(a.name)]),
                dofadr=np.array([m.joint(j).dofadr[0] for j in arm_joint_names(a.name)]),
                actuators=np.array([m.actuator(j).id for j in arm_joint_names(a.name)]),
                gripper_actuator=m.actuator(p + "gripper").id,
                finger_qadr=np.array([m.joint(p + f).qposadr[0] for f in FINGER_JOINTS]),
                tcp=m.site(p + "tcp").id,
                geoms={g for g in range(m.ngeom) if m.geom_bodyid[g] in bodies},
            )
        self.kinematics = ArmKinematics()
        self.executors = {name: ArmExecutor(cfg, name, self.kinematics) for name in self.arms}
        self.events: Events = []       # the executors' and hands' log lines since the last reset (capped)
        self._cube_qadr = m.joint("cube_free").qposadr[0]
        self._cube_dofadr = m.joint("cube_free").dofadr[0]
        self._cube_geom = m.geom("cube").id
        self._table_geom = m.geom("table").id
        self._goal_site = m.site("goal").id
        self._substeps = int(round(cfg.control.substeps_per_ik))
        self._ik_dt = 1.0 / cfg.control.ik_rate_hz
        self._renderer: mujoco.Renderer | None = None
        self.hands = {name: SimulatedHand(self, name) for name in self.arms}   # franka_gripper's goals run here
        self.hand_clients = {name: HandClient(hand) for name, hand in self.hands.items()}
        self.reset()
        self.home_tcp = {name: (self.data.site_xpos[a.tcp].copy(), self.data.site_xmat[a.tcp].reshape(3, 3).copy())
                         for name, a in self.arms.items()}   # tool pose at home_qpos, world frame

    # ------------------------------------------------------------------ state setting
    def reset(self, cube_xy: tuple[float, float] = (0.0, 0.0), cube_yaw: float = 0.0,
              goal: np.ndarray | None = None, arm_qpos: dict[str, np.ndarray] | None = None,
              gripper_width: dict[str, float] | None = None, cube_z: float | None = None) -> None:
        """Arms at home (or ``arm_qpos``), grippers open (or ``gripper_width``), cube at rest at ``cube_xy``."""
        for client in self.hand_clients.values():
            client.reset()                  # aborts the running goal, whoever sent it
        mujoco.mj_resetData(self.model, self.data)
        self.events = []
        for name, arm in self.arms.items():
            q = np.asarray((arm_qpos or {}).get(name, self.cfg.home_qpos), dtype=float)
            finger = np.clip((gripper_width or {}).get(name, 2 * FINGER_RANGE) / 2, 0.0, FINGER_RANGE)
            self.data.qpos[arm.qadr] = q
            self.data.qpos[arm.finger_qadr] = finger
            arm.q_target = q.copy()
            arm.driven = False
            arm.follower.hold(q)
            self.executors[name].reset()
            self.executors[name].sync(q)    # the commanded joints start at the servos' targets
            self.data.ctrl[arm.actuators] = q
            self.data.ctrl[arm.gripper_actuator] = finger
        self.set_cube_pose(cube_xy, cube_yaw, cube_z)
        self.goal = np.array(goal if goal is not None else self.cfg.goal_centre())
        mujoco.mj_forward(self.model, self.data)

    @property
    def goal(self) -> np.ndarray:
        return self.model.site_pos[self._goal_site].copy()

    @goal.setter
    def goal(self, value: np.ndarray) -> None:
        self.model.site_pos[self._goal_site] = np.asarray(value, dtype=float)

    def set_cube_pose(self, xy: tuple[float, float], yaw: float = 0.0, z: float | None = None) -> None:
        """Teleport the cube (at rest) -- used by resets and the experts' recovery resets."""
        z = self.cfg.cube.size / 2 if z is None else z
        a = self._cube_qadr
        self.data.qpos[a:a + 3] = [xy[0], xy[1], z]
        self.data.qpos[a + 3:a + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.data.qvel[self._cube_dofadr:self._cube_dofadr + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)

    # ------------------------------------------------------------------ commands
    def execute(self, arm: str, chunk: Chunk) -> bool:
        """Hand a time-stamped chunk (world clock) to the arm's executor; False if it was refused."""
        self.arms[arm].driven = True
        return self.executors[arm].accept(chunk, self.time)

    def apply_action(self, arm: str, action: np.ndarray) -> None:
        """One policy action (7,) in the arm's base frame (twist + gripper width) for one control period."""
        self.execute(arm, Chunk(self.time, self.cfg.control.dt, np.asarray(action, dtype=float)[None]))

    def follow(self, arm: str, trajectory: JointTrajectory) -> None:
        """A joint trajectory (world clock) for the arm's simulated trajectory controller, which takes it now
        (:class:`TrajectoryFollower`); the arm holds its last point after its end."""
        a = self.arms[arm]
        a.driven = False
        a.follower.replace(trajectory, self.time)

    def hold(self, arm: str) -> None:
        """Stop the arm where it is now (its trajectory dropped; a reflex, an inactive controller)."""
        a = self.arms[arm]
        a.driven = False
        a.q_target = self.joint_positions(arm)
        a.follower.hold(a.q_target)
        self.data.ctrl[a.actuators] = a.q_target

    def set_gripper(self, arm: str, width: float) -> None:
        """The finger servos' target (the simulated hand's; commanded widths go through :attr:`hand_clients`)."""
        w = float(width) if np.isfinite(width) else self.gripper_width(arm)
        self.data.ctrl[self.arms[arm].gripper_actuator] = np.clip(w / 2, 0.0, FINGER_RANGE)

    # ------------------------------------------------------------------ stepping
    def step(self, seconds: float) -> None:
        """Advance the physics, running the executors / joint integration at ``ik_rate_hz``."""
        for _ in range(max(1, int(round(seconds / self._ik_dt)))):
            for arm in self.arms.values():
                q = self.data.qpos[arm.qadr].copy()
                target, width = arm.q_target, None
                if arm.driven:
                    executor = self.executors[arm.name]
                    target, _, width = executor.step(self.time, q)
                    self._log(executor.pop_events())
                elif arm.follower.active:
                    target, _, width = arm.follower.sample(self.time + self._ik_dt)
                    width = width if np.isfinite(width) else None
                if width is not None:
                    self.hand_clients[arm.name].command(width)
                arm.q_target = self.executors[arm.name].ik.clip_positions(
                    np.clip(target, q - MAX_TARGET_LEAD, q + MAX_TARGET_LEAD))
                self.data.ctrl[arm.actuators] = arm.q_target
            mujoco.mj_step(self.model, self.data, nstep=self._substeps)
            for name, hand in self.hands.items():
                hand.update()
                self._log(self.hand_clients[name].pop_log())

    def _log(self, lines: Events) -> None:
        """Keep the newest 100 of the executors' and hands' log lines (most IK periods have none)."""
        if lines:
            self.events = (self.events + lines)[-100:]

    def step_control(self) -> None:
        """One control period (1 / rate_hz) with the current commands held."""
        self.step(self.cfg.control.dt)

    # ------------------------------------------------------------------ reading state
    @property
    def time(self) -> float:
        return float(self.data.time)

    def joint_positions(self, arm: str) -> np.ndarray:
        return self.data.qpos[self.arms[arm].qadr].copy()

    def joint_velocities(self, arm: str) -> np.ndarray:
        return self.data.qvel[self.arms[arm].dofadr].copy()

    def gripper_width(self, arm: str) -> float:
        return float(np.sum(self.data.qpos[self.arms[arm].finger_qadr]))

    def arm_state(self, arm: str) -> ArmState:
        a = self.arms[arm]
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, a.tcp, vel, 0)
        return ArmState(ee_pos=self.data.site_xpos[a.tcp].copy(),
                        ee_rot=self.data.site_xmat[a.tcp].reshape(3, 3).copy(), ee_linvel=vel[3:].copy(),
                        ee_angvel=vel[:3].copy(), gripper_width=self.gripper_width(arm))

    def cube_state(self) -> CubeState:
        a = self._cube_qadr
        return CubeState(pos=self.data.qpos[a:a + 3].copy(), quat=self.data.qpos[a + 3:a + 7].copy())

    def observation(self, arm: str) -> np.ndarray:
        """The arm's policy observation (frames.OBS_DIM,) in its own base frame."""
        return observe(self.arm_state(arm), self.cube_state(), self.cfg.base_frame(arm))

    def arm_table_contacts(self) -> int:
        """Number of active contacts between any arm geom and the table."""
        arm_geoms = set().union(*(a.geoms for a in self.arms.values()))
        n = 0
        for c in self.data.contact[:self.data.ncon]:
            g1, g2 = int(c.geom1), int(c.geom2)
            if (g1 == self._table_geom and g2 in arm_geoms) or (g2 == self._table_geom and g1 in arm_geoms):
                n += 1
        return n

    def holding(self, arm: str) -> bool:
        """Both fingers touch the cube (a grasp)."""
        a = self.arms[arm]
        touching = set()
        for c in self.data.contact[:self.data.ncon]:
            g1, g2 = int(c.geom1), int(c.geom2)
            other = g2 if g1 == self._cube_geom else g1 if g2 == self._cube_geom else None
            if other is not None and other in a.geoms:
                touching.add(self.model.body(self.model.geom_bodyid[other]).name)
        return {f"{arm}_left_finger", f"{arm}_right_finger"} <= touching

    # ------------------------------------------------------------------ rendering
    def render(self, camera: str, width: int = 320, height: int = 240) -> np.ndarray | None:
        """RGB image (H, W, 3) from a named camera, or None when offscreen rendering is unavailable."""
        try:
            if self._renderer is None or (self._renderer.width, self._renderer.height) != (width, height):
                self.close()
                self._renderer = mujoco.Renderer(self.model, height=height, width=width)
            self._renderer.update_scene(self.data, camera=camera)
            return self._renderer.render().copy()
        except Exception:  # no GL context available (no EGL / OSMesa): callers fall back
            self._renderer = None
            return None

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class SnapshotCameras:
    """The world's cameras rendered from snapshots of its state (``TwoArmWorld.data.qpos``), with a model
    data and a renderer of their own: a thread rendering here (tens of ms per image without a GPU) never
    holds up the physics stepping in another. Create, use and close it in the rendering thread (its GL
    context belongs to that thread)."""

    def __init__(self, world: TwoArmWorld, width: int, height: int):
        self.model, self.size = world.model, (width, height)
        self.data = mujoco.MjData(world.model)
        self._renderer: mujoco.Renderer | None = None

    def render(self, qpos: np.ndarray, cameras: list[str]) -> dict[str, np.ndarray] | None:
        """RGB images (H, W, 3) of ``cameras`` at joint positions ``qpos``; None without offscreen rendering."""
        self.data.qpos[:] = qpos
        mujoco.mj_forward(self.model, self.data)
        try:
            if self._renderer is None:
                self._renderer = mujoco.Renderer(self.model, height=self.size[1], width=self.size[0])
            out = {}
            for camera in cameras:
                self._renderer.update_scene(self.data, camera=camera)
                out[camera] = self._renderer.render().copy()
            return out
        except Exception:  # no GL context available (no EGL / OSMesa): callers fall back
            self.close()
            return None

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
