"""ArUco cube pose estimation on synthetic images, and multi-camera pose fusion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from codi_ros.frames import mat_to_quat, quat_to_mat, rot_z
from codi_ros.perception.aruco import (
    MUJOCO_CUBE_FACES,
    CubeMarkerLayout,
    CubePoseEstimator,
    PerceptionError,
    invert,
    make_transform,
    mujoco_face_images,
    rotation_angle,
    to_gray,
)
from codi_ros.perception.fusion import CubePoseFusion, Detection, FusionConfig
from codi_ros.ros.messages import parse_detection, pose_msg
from codi_ros.ros.sim_bridge import MUJOCO_TO_OPTICAL, pinhole_k
from codi_ros.ros.wrist_camera import WristCamera, hand_eye, image_array

LAYOUT = CubeMarkerLayout(cube_size=0.05, marker_size=0.04)
W, H = 640, 480
K = np.array([[600.0, 0.0, (W - 1) / 2], [0.0, 600.0, (H - 1) / 2], [0.0, 0.0, 1.0]])
DIST = np.zeros(5)


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """T_world_cam of an OpenCV camera (z forward, y down) at ``eye`` looking at ``target``."""
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    return make_transform(np.column_stack([x, np.cross(z, x), z]), eye)


def render(T_cam_cube: np.ndarray, rng: np.random.Generator, face_px: int = 400, ids=LAYOUT.face_ids) -> np.ndarray:
    """Grayscale pinhole image of the marker cube: each visible face's texture warped by its homography.

    Only the faces carrying a marker in ``ids`` are drawn (the others are the background colour).
    """
    img = np.full((H, W), 120.0)
    faces = []
    for mid in ids:
        T = T_cam_cube @ LAYOUT.marker_in_cube(mid)
        if T[:3, 2] @ T[:3, 3] >= 0:        # face normal points away from the camera
            continue
        corners = LAYOUT.corners_in_cube(mid, size=LAYOUT.cube_size) @ T_cam_cube[:3, :3].T + T_cam_cube[:3, 3]
        uv = corners @ K.T
        faces.append((corners[:, 2].mean(), mid, (uv[:, :2] / uv[:, 2:]).astype(np.float32)))
    src = np.float32([[-0.5, -0.5], [face_px - 0.5, -0.5], [face_px - 0.5, face_px - 0.5], [-0.5, face_px - 0.5]])
    for _, mid, dst in sorted(faces, reverse=True):               # far faces first
        Hm = cv2.getPerspectiveTransform(src, dst)
        tex = cv2.warpPerspective(LAYOUT.face_image(mid, face_px).astype(np.float32), Hm, (W, H), flags=cv2.INTER_AREA)
        alpha = cv2.warpPerspective(np.ones((face_px, face_px), np.float32), Hm, (W, H), flags=cv2.INTER_LINEAR)
        img = img * (1 - alpha) + tex * alpha
    img += rng.normal(0.0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def direction(off_vertical: float, azimuth: float) -> np.ndarray:
    s = np.sin(off_vertical)
    return np.array([s * np.cos(azimuth), s * np.sin(azimuth), np.cos(off_vertical)])


def cube_on_table(xy, yaw) -> np.ndarray:
    return make_transform(rot_z(yaw), np.array([xy[0], xy[1], LAYOUT.cube_size / 2]))


def wrist_view(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random cube on the table seen from a wrist camera 0.25-0.6 m away, 35-75 deg above the table."""
    T_world_cube = cube_on_table(rng.uniform(-0.3, 0.3, 2), rng.uniform(-np.pi, np.pi))
    dist, elev, azim = rng.uniform(0.25, 0.6), np.radians(rng.uniform(35, 75)), rng.uniform(-np.pi, np.pi)
    eye = T_world_cube[:3, 3] + dist * direction(np.pi / 2 - elev, azim)
    return T_world_cube, look_at(eye, T_world_cube[:3, 3] + rng.normal(0, 0.02, 3))


def test_cube_pose_from_wrist_views_is_accurate_to_millimetres():
    rng = np.random.default_rng(0)
    est = CubePoseEstimator(LAYOUT)
    pos_err, rot_err = [], []
    for _ in range(20):
        T_world_cube, T_world_cam = wrist_view(rng)
        obs = est.estimate(render(invert(T_world_cam) @ T_world_cube, rng), K, DIST)
        assert obs is not None and len(obs.marker_ids) >= 2 and not obs.ambiguous
        T = obs.in_world(T_world_cam)
        pos_err.append(np.linalg.norm(T[:3, 3] - T_world_cube[:3, 3]))
        rot_err.append(np.degrees(rotation_angle(T[:3, :3], T_world_cube[:3, :3])))
    assert np.median(pos_err) < 0.003 and max(pos_err) < 0.006, pos_err
    assert max(rot_err) < 3.0, rot_err


def test_single_marker_pose_is_flagged_ambiguous_and_still_close():
    """Only the top marker visible, seen 0-15 deg off vertical, where its IPPE flip fits almost as well."""
    rng = np.random.default_rng(1)
    est = CubePoseEstimator(LAYOUT)
    rot_err, pos_err = [], []
    for _ in range(20):
        T_world_cube = cube_on_table((0.0, 0.0), rng.uniform(-np.pi, np.pi))
        off, azim, dist = np.radians(rng.uniform(0, 15)), rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 0.6)
        eye = T_world_cube[:3, 3] + dist * direction(off, azim)
        T_world_cam = look_at(eye, T_world_cube[:3, 3], up=(1.0, 0.0, 0.0))
        obs = est.estimate(render(invert(T_world_cam) @ T_world_cube, rng, ids=(LAYOUT.face_ids[4],)), K, DIST)
        assert obs is not None and obs.marker_ids == (LAYOUT.face_ids[4],) and obs.ambiguous
        T = obs.in_world(T_world_cam)
        rot_err.append(np.degrees(rotation_angle(T[:3, :3], T_world_cube[:3, :3])))
        pos_err.append(np.linalg.norm(T[:3, 3] - T_world_cube[:3, 3]))
    assert np.median(rot_err) < 3.0 and np.median(pos_err) < 0.003, (rot_err, pos_err)
    assert max(rot_err) < 12.0 and max(pos_err) < 0.008, (rot_err, pos_err)


def test_no_cube_no_pose_and_gate_rejects_poor_fits():
    rng = np.random.default_rng(2)
    est = CubePoseEstimator(LAYOUT)
    assert est.estimate(np.full((H, W), 120, np.uint8), K, DIST) is None
    T_world_cube, T_world_cam = wrist_view(rng)
    img = render(invert(T_world_cam) @ T_world_cube, rng)
    assert est.estimate(img, K, DIST) is not None
    assert CubePoseEstimator(LAYOUT, max_reprojection_error=1e-3).estimate(img, K, DIST) is None


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(PerceptionError, match="marker_size"):
        CubeMarkerLayout(cube_size=0.05, marker_size=0.06)
    with pytest.raises(PerceptionError, match="face_ids"):
        CubeMarkerLayout(face_ids=(0, 1, 2, 3, 4, 4))
    with pytest.raises(PerceptionError, match="K"):
        CubePoseEstimator(LAYOUT).estimate(np.zeros((H, W), np.uint8), np.eye(3) * 0, DIST)
    with pytest.raises(PerceptionError, match="encoding"):
        to_gray(np.zeros((4, 4, 2), np.uint8), "yuv422")


def test_to_gray_handles_rgb_and_bgr():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200                                            # pure red
    assert to_gray(rgb, "rgb8")[0, 0] == to_gray(rgb[..., ::-1].copy(), "bgr8")[0, 0] == 60


# ---------------------------------------------------------------------------------------------- fusion

def det(source: str, pos, stamp: float = 10.0, yaw: float = 0.3, **kw) -> Detection:
    return Detection(source, stamp, np.asarray(pos, dtype=float), mat_to_quat(rot_z(yaw)), **kw)


def test_fusion_averages_agreeing_cameras_weighted_by_quality():
    f = CubePoseFusion()
    f.add(det("left", [0.0, 0.0, 0.025], reprojection_error=0.3, num_markers=2))
    f.add(det("right", [0.006, 0.0, 0.025], reprojection_error=0.3, num_markers=2, ambiguous=True))
    fused = f.fuse(now=10.1)
    assert set(fused.sources) == {"left", "right"} and not f.rejected
    assert 0.0 < fused.pos[0] < 0.001                            # the ambiguous one counts little
    assert rotation_angle(quat_to_mat(fused.quat), rot_z(0.3)) < 1e-6


def test_fusion_rejects_outliers_stale_nan_and_poor_reprojection():
    f = CubePoseFusion(FusionConfig(max_age=1.0, max_reprojection_error=2.0))
    f.add(det("left", [0.10, 0.0, 0.025], num_markers=2, reprojection_error=0.5))
    f.add(det("right", [0.101, 0.0, 0.025], num_markers=1, reprojection_error=0.5))
    f.add(det("flipped", [0.10, 0.0, 0.025], yaw=0.3 + np.radians(40)))   # a flip: same place, wrong orientation
    f.add(det("far", [0.30, 0.0, 0.025]))
    f.add(det("old", [0.10, 0.0, 0.025], stamp=8.0))
    f.add(det("blurry", [0.10, 0.0, 0.025], reprojection_error=5.0))
    f.add(Detection("nan", 10.0, np.array([np.nan, 0, 0]), np.array([1.0, 0, 0, 0])))
    fused = f.fuse(now=10.2)
    assert set(fused.sources) == {"left", "right"}
    assert set(f.rejected) == {"flipped", "far", "old", "blurry", "nan"}
    assert "outlier" in f.rejected["far"] and "stale" in f.rejected["old"]
    assert "reprojection" in f.rejected["blurry"] and "NaN" in f.rejected["nan"]
    assert np.linalg.norm(fused.pos - [0.1005, 0.0, 0.025]) < 0.001


def test_fusion_two_disagreeing_cameras_trusts_the_better_one():
    f = CubePoseFusion()
    f.add(det("left", [0.0, 0.0, 0.025], num_markers=1, reprojection_error=1.5, ambiguous=True))
    f.add(det("right", [0.1, 0.0, 0.025], num_markers=3, reprojection_error=0.4))
    fused = f.fuse(now=10.0)
    assert fused.sources == ("right",) and "outlier" in f.rejected["left"]


def test_fusion_times_out_and_keeps_each_sources_newest():
    f = CubePoseFusion(FusionConfig(max_age=1.0))
    f.add(det("left", [0.0, 0.0, 0.025], stamp=10.0))
    f.add(det("left", [0.5, 0.0, 0.025], stamp=9.0))             # late, older message: ignored
    assert f.fuse(now=10.5).pos[0] == 0.0
    assert f.fuse(now=11.5) is None and "stale" in f.rejected["left"]


def test_fusion_quaternion_sign_does_not_matter():
    f = CubePoseFusion()
    q = mat_to_quat(rot_z(1.0))
    f.add(Detection("a", 1.0, np.zeros(3), q, num_markers=2))
    f.add(Detection("b", 1.0, np.zeros(3), -q, num_markers=2))
    fused = f.fuse(now=1.0)
    assert len(fused.sources) == 2 and rotation_angle(quat_to_mat(fused.quat), rot_z(1.0)) < 1e-9


# ---------------------------------------------------------------------------------------------- aruco_node logic

def test_wrist_camera_turns_an_image_message_into_a_world_cube_pose():
    rng = np.random.default_rng(5)
    T_tcp_cam = hand_eye([0.06, 0.0, -0.0734], [0.0, 0.0, -0.7071068, 0.7071068])
    cam = WristCamera("left", CubePoseEstimator(LAYOUT), T_tcp_cam)
    T_world_cube, T_world_cam = wrist_view(rng)
    T_world_tcp = T_world_cam @ invert(T_tcp_cam)
    gray = render(invert(T_world_cam) @ T_world_cube, rng)
    rgb = np.zeros((H, W * 3 + 8), np.uint8)                      # rgb8 rows padded to a longer step
    rgb[:, :W * 3] = np.repeat(gray, 3, axis=1)
    data, step = rgb.tobytes(), W * 3 + 8
    assert cam.on_image(data, H, W, step, "rgb8", 5.0) is None  # no camera_info, no tool pose yet
    assert cam.on_image(data, H, W, step, "rgb8", 5.1) is None
    log = [t for _, t in cam.pop_log()]
    assert len(log) == 2 and any("camera_info" in t for t in log) and any("arm state" in t for t in log)
    cam.on_camera_info({"k": K.ravel().tolist(), "d": [0.0] * 5})
    cam.on_arm_state({"header": {"stamp": {"sec": 5, "nanosec": 0}},
                      "ee_pose": pose_msg(T_world_tcp[:3, 3], mat_to_quat(T_world_tcp[:3, :3]))})
    msg = cam.on_image(data, H, W, step, "rgb8", 5.02)
    det = parse_detection(msg)
    assert det.source == "left" and det.stamp == pytest.approx(5.02) and det.num_markers >= 2
    assert np.linalg.norm(det.pos - T_world_cube[:3, 3]) < 0.006
    assert np.degrees(rotation_angle(quat_to_mat(det.quat), T_world_cube[:3, :3])) < 3.0
    assert cam.on_image(data, H, W, step, "rgb8", 5.5) is None  # no tool pose near this image's time
    assert any("within 0.05 s" in t for _, t in cam.pop_log())


def test_image_array_reads_padded_rows_and_rejects_short_buffers():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    padded = np.zeros((3, 6), np.uint8)
    padded[:, :4] = img
    np.testing.assert_array_equal(image_array(padded.tobytes(), 3, 4, 6, "mono8"), img)
    np.testing.assert_array_equal(image_array(list(padded.ravel()), 3, 4, 6, "mono8"), img)
    with pytest.raises(PerceptionError, match="rows of step"):
        image_array(padded.tobytes()[:-1], 3, 4, 6, "mono8")


# ---------------------------------------------------------------------------------------------- MuJoCo cube texture

MJ_W, MJ_H, MJ_FOVY = 640, 480, 45.0
MJ_VIEWS = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1),
            (0.5, -0.6, 0.7), (-0.4, 0.5, 0.6), (0.6, 0.5, -0.4), (-0.7, -0.3, 0.4)]


def mujoco_cube_views(folder: str) -> None:
    """(Run in a child process with MUJOCO_GL set.) Render a box textured with the PNGs in ``folder`` from
    MJ_VIEWS at 0.3 m; save the images and the cameras' optical-frame poses to views.npz."""
    import mujoco

    files = " ".join(f'file{name}="{folder}/{name}.png"' for name, _ in MUJOCO_CUBE_FACES)
    cams = []
    for i, v in enumerate(MJ_VIEWS):
        z = np.array(v, float) / np.linalg.norm(v)                 # a MuJoCo camera looks along its -z
        x = np.cross([0, 0, 1.0] if abs(z[2]) < 0.9 else [0, 1.0, 0], z)
        x /= np.linalg.norm(x)
        y, p = np.cross(z, x), 0.3 * z
        xyaxes = " ".join(str(c) for c in (*x, *y))
        cams.append(f'<camera name="c{i}" pos="{p[0]} {p[1]} {p[2]}" xyaxes="{xyaxes}" fovy="{MJ_FOVY}"/>')
    h = LAYOUT.cube_size / 2
    model = mujoco.MjModel.from_xml_string(f"""<mujoco>
      <visual><global offwidth="{MJ_W}" offheight="{MJ_H}"/><headlight ambient="0.9 0.9 0.9" diffuse="0 0 0"/></visual>
      <asset><texture name="cube" type="cube" {files}/><material name="cube" texture="cube"/></asset>
      <worldbody>{"".join(cams)}<geom type="box" size="{h} {h} {h}" material="cube"/></worldbody></mujoco>""")
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, MJ_H, MJ_W)
    images, poses = [], []
    for i in range(len(MJ_VIEWS)):
        renderer.update_scene(data, camera=f"c{i}")
        images.append(renderer.render().copy())
        poses.append(make_transform(data.cam_xmat[i].reshape(3, 3) @ MUJOCO_TO_OPTICAL, data.cam_xpos[i]))
    renderer.close()
    np.savez(f"{folder}/views.npz", images=np.array(images), poses=np.array(poses))


def test_mujoco_cube_texture_renders_as_the_marker_layout(tmp_path):
    """The face images for a MuJoCo cube texture put every marker where the estimator expects it (with the
    simulated cameras' intrinsics and optical frame as sim_node publishes them)."""
    for name, image in mujoco_face_images(LAYOUT).items():
        cv2.imwrite(str(tmp_path / f"{name}.png"), image)
    root = Path(__file__).resolve().parents[1]
    for gl in ("egl", "osmesa"):
        child = subprocess.run(
            [sys.executable, "-c", f"import test_perception as t; t.mujoco_cube_views({str(tmp_path)!r})"],
            env={**os.environ, "MUJOCO_GL": gl, "PYTHONPATH": f"{root}{os.pathsep}{root / 'test'}"},
            capture_output=True, text=True, timeout=120)
        if child.returncode == 0:
            break
    else:
        pytest.skip(f"no offscreen rendering (EGL or OSMesa): {child.stderr.strip().splitlines()[-1:]}")
    views = np.load(tmp_path / "views.npz")
    K_mj = pinhole_k(MJ_W, MJ_H, MJ_FOVY)
    est = CubePoseEstimator(LAYOUT)
    seen = set()
    for image, T_world_cam in zip(views["images"], views["poses"], strict=True):
        obs = est.estimate(to_gray(image, "rgb8"), K_mj, DIST)
        assert obs is not None
        seen.update(obs.marker_ids)
        T = obs.in_world(T_world_cam)                             # the cube sits at the origin, unrotated
        assert np.linalg.norm(T[:3, 3]) < 0.001 and np.degrees(rotation_angle(T[:3, :3], np.eye(3))) < 1.0
    assert seen == set(LAYOUT.face_ids)
