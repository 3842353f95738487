"""The simulated world: reach, IK tracking and limits, frame convention, grasping."""

import numpy as np
import pytest

from codi_ros.config import ConfigError, load_world_config, world_config_from_dict
from codi_ros.control.ik import DifferentialIK
from codi_ros.frames import OBS_FIELDS, field_slice, rotation_error, tool_down, yaw_of
from codi_ros.sim.experts import Phase, PickPlace
from codi_ros.sim.world import TwoArmWorld


@pytest.fixture(scope="module")
def cfg():
    return load_world_config()


@pytest.fixture(scope="module")
def world(cfg):
    return TwoArmWorld(cfg)


def twist_action(world, arm, twist_world, width=0.08):
    """A policy action (base frame) for a world-frame tool twist."""
    frame = world.cfg.base_frame(arm)
    return np.r_[frame.vec_to_base(twist_world[:3]), frame.vec_to_base(twist_world[3:]), width]


def servo_to(world, arm, target, seconds=6.0):
    """Drive the tool top-down to ``target`` with a P-controller on the twist; return the final error."""
    yaw = np.arctan2(*world.home_tcp[arm][1][[1, 0], 0])
    for _ in range(int(seconds * world.cfg.control.rate_hz)):
        st = world.arm_state(arm)
        twist = np.r_[3.0 * (target - st.ee_pos), 3.0 * rotation_error(tool_down(yaw), st.ee_rot)]
        world.apply_action(arm, twist_action(world, arm, twist))
        world.step_control()
    return float(np.linalg.norm(world.arm_state(arm).ee_pos - target))


@pytest.mark.parametrize("arm", ["left", "right"])
def test_both_arms_reach_the_handover_strip(world, cfg, arm):
    for x, y in cfg.handover_strip.corners():
        world.reset(cube_xy=(0.0, 0.55))
        assert servo_to(world, arm, np.array([x, y, cfg.cube.size / 2])) < 0.015, (x, y)


@pytest.mark.parametrize("arm", ["left", "right"])
def test_no_arm_reaches_the_far_end(world, cfg, arm):
    far_x = 0.3 if arm == "left" else -0.3          # the other arm's half, beyond the strip
    world.reset(cube_xy=(0.0, 0.55))
    assert servo_to(world, arm, np.array([far_x, 0.0, cfg.cube.size / 2])) > 0.1
    assert not cfg.reachable(arm, (far_x, 0.0))
    for x, y in cfg.goal.corners():                  # the task goal is on the right arm's side only
        assert cfg.reachable("right", (x, y)) and not cfg.reachable("left", (x, y))


def test_ik_tracks_a_commanded_twist(world):
    world.reset(cube_xy=(0.0, 0.55))
    twist = np.array([0.1, 0.05, -0.08, 0.0, 0.0, 0.3])
    for _ in range(5):                               # let the position servos catch up
        world.apply_action("left", twist_action(world, "left", twist))
        world.step_control()
    st = world.arm_state("left")
    np.testing.assert_allclose(st.ee_linvel, twist[:3], atol=0.01)
    np.testing.assert_allclose(st.ee_angvel, twist[3:], atol=0.03)


def test_ik_respects_joint_and_speed_limits(world, cfg):
    world.reset(cube_xy=(0.0, 0.55))
    lo, hi = world.executors["left"].ik.q_lower, world.executors["left"].ik.q_upper
    peak = 0.0
    for _ in range(60):                              # up and spinning, far past the limits
        world.apply_action("left", twist_action(world, "left", np.array([0.0, 0.0, 0.3, 0.0, 0.0, 1.5])))
        world.step_control()
        q = world.joint_positions("left")
        assert np.all(q >= lo - 0.02) and np.all(q <= hi + 0.02)
        peak = max(peak, float(np.max(np.abs(world.joint_velocities("left")) / cfg.control.joint_velocity_limit)))
    assert peak < 1.1


def test_ik_refuses_non_finite_input(cfg):
    ik = DifferentialIK(cfg.control, np.array(cfg.home_qpos), -np.ones(7) * 3, np.ones(7) * 3)
    q = np.array(cfg.home_qpos)
    assert np.all(ik.joint_velocities(np.full((6, 7), np.nan), q, np.ones(6)) == 0)
    assert np.all(ik.joint_velocities(np.eye(6, 7), q, np.array([np.inf, 0, 0, 0, 0, 0])) == 0)


def test_mirrored_scenes_give_identical_observations(world, cfg):
    """Rotating the scene by 180 deg about the table centre swaps the arms' roles exactly."""
    q = np.array(cfg.home_qpos) + np.array([0.1, -0.1, 0.2, 0.1, -0.1, 0.05, 0.3])
    action = np.array([0.05, 0.02, -0.03, 0.0, 0.0, 0.2, 0.04])
    obs = []
    for arm, cube_xy, yaw in (("left", (-0.3, 0.2), 0.3), ("right", (0.3, -0.2), 0.3 + np.pi)):
        world.reset(cube_xy=cube_xy, cube_yaw=yaw, arm_qpos={"left": q, "right": q})
        for a in ("left", "right"):
            world.apply_action(a, action)
        world.step_control()
        obs.append(world.observation(arm))
    np.testing.assert_allclose(obs[0], obs[1], atol=1e-6)


def test_the_same_pick_for_either_arm_runs_the_same_in_its_own_frame(world, cfg):
    """A whole scripted pick-and-place (contacts, grasp, lift, carry, release) in a scene and in the
    scene rotated by 180 deg about the table centre: each arm's observations, in its own base frame,
    agree at every control step, and both arms lift the cube. A difference between the arms anywhere
    on the way from the world to the policy's actions and back (frames, IK, contacts, the expert) fails it."""
    q = np.array(cfg.home_qpos) + np.array([0.15, -0.1, -0.12, 0.1, 0.08, -0.1, 0.2])
    runs = {}
    for arm, sign, yaw in (("left", 1.0, 0.35), ("right", -1.0, 0.35 + np.pi)):
        world.reset(cube_xy=(sign * -0.38, sign * 0.12), cube_yaw=yaw, arm_qpos={arm: q})
        skill = PickPlace(world, arm, (sign * -0.3, sign * -0.2))
        obs, lifted = [], False
        for _ in range(160):
            world.apply_action(arm, skill.act())
            world.step_control()
            obs.append(world.observation(arm))
            lifted |= world.holding(arm) and world.cube_state().pos[2] > 0.07
        runs[arm] = np.array(obs), lifted
    assert runs["left"][1] and runs["right"][1], "an arm never lifted the cube"
    np.testing.assert_allclose(runs["left"][0], runs["right"][0], atol=1e-4)


@pytest.mark.parametrize("arm,cube,place", [("left", (-0.25, 0.2), (-0.2, -0.3)), ("right", (0.3, -0.1), (0.05, 0.15))])
def test_scripted_grasp_lifts_and_places_the_cube(world, arm, cube, place):
    world.reset(cube_xy=cube, cube_yaw=0.4)
    skill = PickPlace(world, arm, place)
    lifted = False
    for _ in range(200):
        world.apply_action(arm, skill.act())
        world.step_control()
        lifted |= world.cube_state().pos[2] > 0.08 and world.holding(arm)
        if skill.done:
            break
    assert lifted, "the cube was never held above the table"
    assert np.linalg.norm(world.cube_state().pos[:2] - np.array(place)) < 0.02
    assert world.arm_table_contacts() == 0


def test_the_demonstrations_tell_a_grasp_about_to_close_from_a_release(world):
    """The observation just before the expert closes on the cube and the one as it retreats from a placed
    cube must differ: they call for opposite actions (close; rise and go home). Once they showed the same
    open gripper at the cube, and the policy learned to retreat from cubes it had never grasped."""
    world.reset(cube_xy=(-0.35, 0.1), cube_yaw=0.2)
    skill = PickPlace(world, "left", (-0.4, -0.15))
    seen = {}
    for _ in range(200):
        seen.setdefault(skill.phase, world.observation("left"))   # the first observation of each phase
        world.apply_action("left", skill.act())
        world.step_control()
        if skill.phase is Phase.HOME:
            break
    assert {Phase.CLOSE, Phase.RETREAT} <= set(seen), f"the pick-and-place never got through: {set(seen)}"
    width, rel = field_slice(OBS_FIELDS, "gripper_width"), field_slice(OBS_FIELDS, "cube_rel")
    grasp, retreat = seen[Phase.CLOSE], seen[Phase.RETREAT]
    assert np.linalg.norm(grasp[rel] - retreat[rel]) < 0.02, "the two states are not both at the cube"
    assert abs(grasp[width][0] - retreat[width][0]) > 0.005, (grasp[width], retreat[width])


@pytest.mark.parametrize("arm", ["left", "right"])
@pytest.mark.parametrize("cube_yaw", [0.7, -0.7, 1.2])
def test_expert_grasps_with_the_least_wrist_turn_and_the_observation_shows_the_alignment(world, cfg, arm, cube_yaw):
    """The grasp yaw is the cube's (mod 90 deg) nearest the tool's: never more than 45 deg of wrist
    turn from a wrist turned 0.6 rad off home, and at the close the observation's cube_yaw_rel4
    reads aligned, (cos, sin) = (1, 0)."""
    q = np.array(cfg.home_qpos)
    q[6] += 0.6
    world.reset(cube_xy=(-0.4, 0.1) if arm == "left" else (0.4, -0.1), cube_yaw=cube_yaw, arm_qpos={arm: q})
    start_yaw = yaw_of(world.arm_state(arm).ee_rot)
    skill = PickPlace(world, arm, (-0.45, -0.1) if arm == "left" else (0.45, 0.1))
    for _ in range(150):
        world.apply_action(arm, skill.act())
        world.step_control()
        if skill.phase is Phase.CLOSE:
            break
    assert skill.phase is Phase.CLOSE, "the expert never reached the grasp"
    turn = np.angle(np.exp(1j * (yaw_of(world.arm_state(arm).ee_rot) - start_yaw)))
    assert abs(turn) < np.radians(45 + 3)
    rel = world.observation(arm)[field_slice(OBS_FIELDS, "cube_yaw_rel4")]
    np.testing.assert_allclose(rel, [1.0, 0.0], atol=0.05)


def test_world_config_rejects_an_unreachable_goal_region(cfg):
    d = cfg.to_dict()
    d["goal"] = dict(d["goal"], x_range=[0.0, 0.02], y_range=[0.55, 0.58])   # middle of the long edge
    with pytest.raises(ConfigError, match="out of reach"):
        world_config_from_dict(d)


def test_wrist_camera_sees_the_marker_textured_cube(cfg):
    """The sim's cube wears the ArUco layout the aruco_node expects; the pose it estimates is right."""
    cv2 = pytest.importorskip("cv2")
    from codi_ros.perception.aruco import CubeMarkerLayout, CubePoseEstimator, mujoco_face_images

    layout = CubeMarkerLayout(cube_size=cfg.cube.size)
    world = TwoArmWorld(cfg, cube_faces=mujoco_face_images(layout))
    world.reset(cube_xy=(-0.36, 0.03), cube_yaw=0.2)
    w, h = 640, 480
    image = world.render("wrist_left", w, h)
    if image is None:
        pytest.skip("no offscreen OpenGL context (MUJOCO_GL=egl or osmesa) on this machine")
    cam = world.model.camera("wrist_left")
    f = 0.5 * h / np.tan(np.deg2rad(cam.fovy[0]) / 2)
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    obs = CubePoseEstimator(layout).estimate(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), K, np.zeros(5))
    assert obs is not None, "no cube markers detected in the wrist image"
    cam_pos = world.data.cam_xpos[cam.id]
    cam_rot = world.data.cam_xmat[cam.id].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])   # MuJoCo -> OpenCV optical
    cube_world = cam_pos + cam_rot @ obs.T_cam_cube[:3, 3]
    assert np.linalg.norm(cube_world - world.cube_state().pos) < 0.02


def test_simulated_joints_follow_velocity_commands_with_the_configured_tracking_lag():
    """control.tracking_time_constant (used by the latency-aware planner's state prediction) is the simulated
    arm's: a first-order lag with it reproduces the measured joint velocities under a reversing twist chunk
    better than half or twice its value, within 0.01 rad/s on average."""
    from codi_ros.control.executor import Chunk

    cfg = load_world_config()
    world = TwoArmWorld(cfg)
    actions = np.tile([0.3, 0.0, -0.1, 0.0, 0.0, 0.0, 0.08], (16, 1))
    actions[8:, :3] *= -1
    world.execute("left", Chunk(0.0, cfg.control.dt, actions))
    world.executors["left"].trace = []
    measured = []
    for _ in range(150):
        world.step(1 / cfg.control.ik_rate_hz)
        measured.append(world.joint_velocities("left"))
    commands = np.array([qdot for _, qdot, _ in world.executors["left"].trace])

    def error(tau: float) -> float:
        dt, v, out = 1 / cfg.control.ik_rate_hz, np.zeros(7), []
        for c in commands:
            v = v + dt / (tau + dt) * (c - v)
            out.append(v)
        return float(np.abs(np.array(out) - np.array(measured)).mean())

    tau = cfg.control.tracking_time_constant
    assert error(tau) < 0.01 and error(tau) < min(error(tau / 2), error(2 * tau))
