"""aruco_node's behaviour: wrist-camera image -> cube pose in the world frame.

T_world_cube = T_world_tcp(t_image) T_tcp_cam T_cam_cube: the tool pose at the image's time stamp
(from the arm's ArmState stream), the hand-eye calibration T_tcp_cam (OpenCV optical frame, x
right, y down, z forward) and the ArUco estimate (:mod:`codi_ros.perception.aruco`).
"""

from __future__ import annotations

import array
import bisect
from collections.abc import Sequence

import numpy as np

from codi_ros.frames import mat_to_quat, quat_to_mat
from codi_ros.perception.aruco import CubePoseEstimator, PerceptionError, make_transform, to_gray
from codi_ros.perception.fusion import Detection
from codi_ros.ros.messages import Msg, detection_msg, header_time, parse_pose
from codi_ros.ros.watchdog import LogOnce

CHANNELS = {"mono8": 1, "8uc1": 1, "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}


def image_array(data: bytes | Sequence[int], height: int, width: int, step: int, encoding: str) -> np.ndarray:
    """(H, W[, C]) uint8 view of a sensor_msgs/Image's contents (rows may be padded to ``step`` bytes)."""
    ch = CHANNELS.get(encoding.lower())
    if ch is None:
        raise PerceptionError(f"image encoding {encoding!r} not supported (use {', '.join(CHANNELS)})")
    buffers = (bytes, bytearray, memoryview, array.array)
    buf = np.frombuffer(data, np.uint8) if isinstance(data, buffers) else np.asarray(data, dtype=np.uint8)
    if step < width * ch or buf.size < height * step:
        raise PerceptionError(f"image: {buf.size} bytes do not hold {height} rows of step {step} for "
                              f"{width} x {ch}-channel pixels")
    img = buf[:height * step].reshape(height, step)[:, :width * ch]
    return img if ch == 1 else img.reshape(height, width, ch)


def hand_eye(translation: Sequence[float], quaternion_xyzw: Sequence[float]) -> np.ndarray:
    """T_tcp_cam from a translation (m) and a ROS-order (x, y, z, w) quaternion."""
    t, q = np.asarray(translation, dtype=float), np.asarray(quaternion_xyzw, dtype=float)
    if t.shape != (3,) or q.shape != (4,) or not (np.all(np.isfinite(t)) and np.all(np.isfinite(q))) \
            or abs(np.linalg.norm(q) - 1.0) > 1e-3:
        raise ValueError(f"hand-eye needs a translation (3) and a unit quaternion (x, y, z, w), got {t}, {q}")
    return make_transform(quat_to_mat(np.roll(q, 1)), t)


class PoseHistory:
    """Recent tool poses T_world_tcp, looked up at the stamp nearest to an image's."""

    def __init__(self, horizon: float = 1.0):
        self.horizon = horizon
        self._stamps: list[float] = []
        self._poses: list[np.ndarray] = []

    def add(self, stamp: float, T: np.ndarray) -> None:
        i = bisect.bisect(self._stamps, stamp)
        self._stamps.insert(i, stamp)
        self._poses.insert(i, T)
        drop = bisect.bisect_left(self._stamps, self._stamps[-1] - self.horizon)
        del self._stamps[:drop], self._poses[:drop]

    def at(self, stamp: float, tolerance: float) -> np.ndarray | None:
        i = bisect.bisect(self._stamps, stamp)
        near = [j for j in (i - 1, i) if 0 <= j < len(self._stamps)]
        if not near:
            return None
        j = min(near, key=lambda j: abs(self._stamps[j] - stamp))
        return self._poses[j] if abs(self._stamps[j] - stamp) <= tolerance else None


class WristCamera:
    """Turns one arm's wrist-camera images into codi_msgs/CubeDetection dicts (world frame)."""

    def __init__(self, source: str, estimator: CubePoseEstimator, T_tcp_cam: np.ndarray, pose_tolerance: float = 0.05):
        self.source, self.estimator, self.T_tcp_cam = source, estimator, T_tcp_cam
        self.pose_tolerance = pose_tolerance
        self.poses = PoseHistory()
        self._K: np.ndarray | None = None
        self._dist = np.zeros(5)
        self._log = LogOnce()
        self._lines: list[tuple[str, str]] = []

    def on_arm_state(self, msg: Msg) -> None:
        pos, q = parse_pose(msg.get("ee_pose", {}))
        if np.all(np.isfinite(pos)) and np.all(np.isfinite(q)) and np.linalg.norm(q) > 0.5:
            self.poses.add(header_time(msg), make_transform(quat_to_mat(q), pos))

    def on_camera_info(self, msg: Msg) -> None:
        K = np.asarray(msg.get("k", []), dtype=float)
        if K.size != 9 or not np.all(np.isfinite(K)) or K[0] <= 0 or K[4] <= 0:
            self._lines += self._log.update({"info": f"ignoring camera_info with an unusable K: {K.tolist()}"})
            return
        self._K, self._dist = K.reshape(3, 3), np.asarray(msg.get("d", []) or np.zeros(5), dtype=float)

    def on_image(self, data: bytes | Sequence[int], height: int, width: int, step: int, encoding: str,
                 stamp: float) -> dict | None:
        """A CubeDetection dict from a sensor_msgs/Image's contents, or None (no camera_info or tool pose
        yet, unreadable image, no cube seen, poor fit)."""
        problems = {}
        T_world_tcp = self.poses.at(stamp, self.pose_tolerance)
        if self._K is None:
            problems["info"] = "no camera_info received yet"
        if T_world_tcp is None:
            problems["pose"] = f"no arm state within {self.pose_tolerance} s of the image stamp"
        obs = None
        if not problems:
            try:
                gray = to_gray(image_array(data, height, width, step, encoding), encoding)
                obs = self.estimator.estimate(gray, self._K, self._dist)
            except PerceptionError as e:
                problems["image"] = str(e)
        self._lines += self._log.update(problems, context=f"camera {self.source}: ")
        if obs is None:
            return None
        T = obs.in_world(T_world_tcp @ self.T_tcp_cam)
        return detection_msg(Detection(self.source, stamp, T[:3, 3], mat_to_quat(T[:3, :3]), obs.reprojection_error,
                                       len(obs.marker_ids), obs.ambiguous))

    def pop_log(self) -> list[tuple[str, str]]:
        lines, self._lines = self._lines, []
        return lines
