"""Eye-in-hand calibration of an FR3's wrist camera: T_tcp_cam from recorded pose pairs (OpenCV, no ROS).

Each pair is (T_base_tcp, T_cam_marker): the tool (TCP) pose in the robot base frame, from forward
kinematics, and the pose of a marker board in the camera's OpenCV optical frame (x right, y down,
z forward), e.g. from ``cv2.solvePnP``, recorded while the marker stays fixed in the world.
``cv2.calibrateHandEye`` takes them as gripper2base and target2cam and returns cam2gripper = T_tcp_cam.
Poses are 4x4 homogeneous transforms ``T_a_b`` mapping b-coordinates to a; quaternions are ROS-order
(x, y, z, w) here and in the files, (w, x, y, z) inside ``codi_ros.frames``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from codi_ros.frames import mat_to_quat, quat_to_mat
from codi_ros.perception.aruco import PerceptionError, make_transform, rotation_angle

Pair = tuple[np.ndarray, np.ndarray]   # (T_base_tcp, T_cam_marker)

METHODS: dict[str, int] = {
    "tsai": cv2.CALIB_HAND_EYE_TSAI,
    "park": cv2.CALIB_HAND_EYE_PARK,
    "horaud": cv2.CALIB_HAND_EYE_HORAUD,
    "andreff": cv2.CALIB_HAND_EYE_ANDREFF,
    "daniilidis": cv2.CALIB_HAND_EYE_DANIILIDIS,
}
# Park: on 1000 synthetic recordings (15 tool poses tilted 15-30 deg, marker noise 1 mm / 0.2 deg) it had the lowest
# translation error (mean 1.85 mm, as Horaud; Tsai 1.86, Andreff 1.88, Daniilidis 1.96), which is what limits the
# accuracy, and beat Tsai on 57 % of the recordings in translation and in rotation. All five are exact without noise.
DEFAULT_METHOD = "park"

QUATERNION_TOLERANCE = 1e-3   # |norm - 1| up to which a quaternion is normalised, beyond which it is refused
MIN_ROTATION_DEG = 2.0        # a tool rotation closer than this to the first pair's adds no information
MIN_AXIS_SPREAD_DEG = 5.0     # RMS angle of the rotation axes from their common axis below which it is degenerate


@dataclass(frozen=True)
class HandEyeResult:
    """T_tcp_cam (the camera's optical frame in the tool frame) and the spread of the implied marker pose."""

    translation: np.ndarray       # (3,) m
    quaternion_xyzw: np.ndarray   # (4,) w >= 0
    method: str
    n_pairs: int
    translation_rms_m: float      # RMS distance of the per-pair marker positions in the base frame from their mean
    rotation_rms_deg: float       # RMS angle of the per-pair marker orientations from their mean

    @property
    def T_tcp_cam(self) -> np.ndarray:
        return make_transform(quat_to_mat(np.roll(self.quaternion_xyzw, 1)), self.translation)

    def as_dict(self) -> dict:
        """Plain floats and lists, for JSON / YAML."""
        return {"method": self.method, "n_pairs": self.n_pairs,
                "translation": [float(v) for v in self.translation],
                "quaternion_xyzw": [float(v) for v in self.quaternion_xyzw],
                "translation_rms_m": self.translation_rms_m, "rotation_rms_deg": self.rotation_rms_deg}


def _vector(entry: dict, key: str, size: int, where: str) -> np.ndarray:
    if key not in entry:
        raise PerceptionError(f"{where}.{key}: missing")
    raw = entry[key]
    if not (isinstance(raw, list) and len(raw) == size
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)):
        raise PerceptionError(f"{where}.{key}: expected a list of {size} numbers, got {raw!r}")
    v = np.array(raw, dtype=float)
    if not np.all(np.isfinite(v)):
        raise PerceptionError(f"{where}.{key}: NaN or inf in {raw}")
    return v


def _pose(pair: dict, key: str, where: str) -> np.ndarray:
    """The 4x4 transform of ``pair[key]`` = {"translation": [3], "quaternion_xyzw": [4]}."""
    where = f"{where}.{key}"
    if not isinstance(pair.get(key), dict):
        raise PerceptionError(f"{where}: missing, or not an object with translation and quaternion_xyzw")
    t = _vector(pair[key], "translation", 3, where)
    q = _vector(pair[key], "quaternion_xyzw", 4, where)
    norm = np.linalg.norm(q)
    if abs(norm - 1.0) > QUATERNION_TOLERANCE:
        raise PerceptionError(f"{where}.quaternion_xyzw: not a unit quaternion (norm {norm:.6f})")
    return make_transform(quat_to_mat(np.roll(q / norm, 1)), t)


def check_motion(pairs: list[Pair]) -> None:
    """Refuse recordings whose tool rotations cannot determine T_tcp_cam (fewer than 3, or about one axis)."""
    if len(pairs) < 3:
        raise PerceptionError(f"pairs: {len(pairs)} given, need at least 3 with distinct tool rotations "
                              "(10 or more recommended)")
    R0 = pairs[0][0][:3, :3]
    rvecs = [cv2.Rodrigues(R0.T @ T_base_tcp[:3, :3])[0].ravel() for T_base_tcp, _ in pairs[1:]]
    axes = np.array([r / np.linalg.norm(r) for r in rvecs if np.linalg.norm(r) > np.radians(MIN_ROTATION_DEG)])
    if len(axes) == 0:
        raise PerceptionError("pairs: the tool has the same rotation in every pair; "
                              "rotate it about at least two different axes")
    s = np.linalg.svd(axes, compute_uv=False) / np.sqrt(len(axes))
    spread = np.degrees(np.arcsin(min(1.0, float(np.sqrt(np.sum(s[1:] ** 2))))))   # RMS angle from the best axis
    if spread < MIN_AXIS_SPREAD_DEG:
        raise PerceptionError(f"pairs: the tool rotations are all about nearly the same axis (spread {spread:.1f} "
                              f"deg); rotate it about at least two different axes")


def _load(path: str | Path) -> tuple[str, list[Pair]]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:   # ValueError: bad JSON or UTF-8
        raise PerceptionError(f"{p}: cannot read the pairs file: {e}") from None
    if not isinstance(data, dict):
        raise PerceptionError(f"{p}: expected an object with 'arm' and 'pairs'")
    if not isinstance(data.get("arm"), str) or not data["arm"]:
        raise PerceptionError(f"{p}: arm: missing, or not an arm name")
    if not isinstance(data.get("pairs"), list):
        raise PerceptionError(f"{p}: pairs: missing, or not a list")
    pairs = []
    for i, pair in enumerate(data["pairs"]):
        where = f"{p}: pairs[{i}]"
        if not isinstance(pair, dict):
            raise PerceptionError(f"{where}: expected an object with tcp_in_base and marker_in_camera")
        pairs.append((_pose(pair, "tcp_in_base", where), _pose(pair, "marker_in_camera", where)))
    try:
        check_motion(pairs)
    except PerceptionError as e:
        raise PerceptionError(f"{p}: {e}") from None
    return data["arm"], pairs


def load_pairs(path: str | Path) -> list[Pair]:
    """The (T_base_tcp, T_cam_marker) pairs of a JSON recording, validated (see ``check_motion``)."""
    return _load(path)[1]


def _marker_spread(pairs: list[Pair], T_tcp_cam: np.ndarray) -> tuple[float, float]:
    """RMS spread (m, deg) of T_base_marker = T_base_tcp @ T_tcp_cam @ T_cam_marker over the pairs."""
    markers = [T_base_tcp @ T_tcp_cam @ T_cam_marker for T_base_tcp, T_cam_marker in pairs]
    p = np.array([T[:3, 3] for T in markers])
    U, _, Vt = np.linalg.svd(sum(T[:3, :3] for T in markers))   # chordal mean rotation
    R_mean = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    angles = np.array([rotation_angle(R_mean, T[:3, :3]) for T in markers])
    return (float(np.sqrt(np.mean(np.sum((p - p.mean(axis=0)) ** 2, axis=1)))),
            float(np.degrees(np.sqrt(np.mean(angles ** 2)))))


def calibrate_hand_eye(pairs: list[Pair], method: str = DEFAULT_METHOD) -> HandEyeResult:
    """T_tcp_cam from (T_base_tcp, T_cam_marker) pairs with ``cv2.calibrateHandEye`` (a name of METHODS)."""
    if method not in METHODS:
        raise PerceptionError(f"method: {method!r} is not one of {sorted(METHODS)}")
    check_motion(pairs)
    R, t = cv2.calibrateHandEye([A[:3, :3] for A, _ in pairs], [A[:3, 3] for A, _ in pairs],
                                [B[:3, :3] for _, B in pairs], [B[:3, 3] for _, B in pairs], method=METHODS[method])
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
        raise PerceptionError(f"cv2.calibrateHandEye ({method}) found no solution for these pairs")
    T_tcp_cam = make_transform(R, t.ravel())
    t_rms, r_rms = _marker_spread(pairs, T_tcp_cam)
    return HandEyeResult(translation=T_tcp_cam[:3, 3].copy(), quaternion_xyzw=np.roll(mat_to_quat(R), -1),
                         method=method, n_pairs=len(pairs), translation_rms_m=t_rms, rotation_rms_deg=r_rms)


def _children(lines: list[str], header: int) -> dict[str, int]:
    """The keys (and their line numbers) of the block mapping that opens at line ``header``."""
    indent = len(lines[header]) - len(lines[header].lstrip(" "))
    keys, child = {}, None
    for i in range(header + 1, len(lines)):
        s = lines[i]
        if not s.strip() or s.lstrip().startswith("#"):
            continue
        ind = len(s) - len(s.lstrip(" "))
        if ind <= indent:
            break
        child = ind if child is None else child
        m = re.match(r"\s*([\w.-]+):(\s|$)", s)
        if ind == child and m:
            keys[m.group(1)] = i
    return keys


def _yaml_list(values: np.ndarray) -> str:
    """A YAML flow list of the values rounded to 7 decimals, trailing zeros dropped."""
    text = [f"{round(float(v), 7) + 0.0:.7f}".rstrip("0") for v in values]   # + 0.0: no "-0.0"
    return "[" + ", ".join(s + "0" if s.endswith(".") else s for s in text) + "]"


def write_hand_eye(hw_yaml_path: str | Path, arm: str, result: HandEyeResult) -> None:
    """Set ``arms: <arm>: hand_eye_translation / hand_eye_quaternion_xyzw`` in hw.yaml, keeping every other
    line and the comments; written through a temp file and checked by re-reading it before replacing."""
    p = Path(hw_yaml_path)
    with open(p, encoding="utf-8", newline="") as f:
        original = f.read()
    lines = original.splitlines(keepends=True)
    top = next((i for i, s in enumerate(lines) if re.match(r"arms:\s*(#.*)?$", s)), None)
    if top is None:
        raise PerceptionError(f"{p}: no top-level 'arms:' mapping")
    arms = _children(lines, top)
    if arm not in arms:
        raise PerceptionError(f"{p}: arms: no arm {arm!r} (found {sorted(arms)})")
    fields = _children(lines, arms[arm])
    new_values = {"hand_eye_translation": result.translation, "hand_eye_quaternion_xyzw": result.quaternion_xyzw}
    for key, values in new_values.items():
        if key not in fields:
            raise PerceptionError(f"{p}: arms: {arm}: {key}: missing")
        i = fields[key]
        body = lines[i].rstrip("\r\n")
        m = re.match(r"(\s*[\w.-]+:\s*)(\[[^\]#]*\])(\s*#.*)?\s*$", body)
        if m is None:
            raise PerceptionError(f"{p}: arms: {arm}: {key}: expected a one-line list [...], got {body.strip()!r}")
        head, old, comment = m.group(1), m.group(2), m.group(3) or ""
        line = head + _yaml_list(values)
        if comment:   # keep the comment's column when the new value fits before it
            column = len(head) + len(old) + len(comment) - len(comment.lstrip())
            line = line.ljust(column - 2) + "  " + comment.lstrip()
        lines[i] = line + lines[i][len(body):]
    try:   # what the new file must read back as: the old one with these two values replaced
        expected = yaml.safe_load(original)
        for key, values in new_values.items():
            expected["arms"][arm][key] = [round(float(v), 7) + 0.0 for v in values]
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise PerceptionError(f"{p}: not valid YAML, or arms: {arm} is not a mapping: {e}") from None
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write("".join(lines))
        with open(tmp, encoding="utf-8") as f:
            if yaml.safe_load(f) != expected:
                raise PerceptionError(f"{p}: the rewritten file did not read back as intended; left unchanged")
        shutil.copymode(p, tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def calibrate_file(pairs_path: str | Path, hw_yaml_path: str | Path | None = None,
                   method: str = DEFAULT_METHOD) -> HandEyeResult:
    """Load a JSON recording, calibrate, and (with ``hw_yaml_path``) write the result for its arm."""
    arm, pairs = _load(pairs_path)
    result = calibrate_hand_eye(pairs, method)
    if hw_yaml_path is not None:
        write_hand_eye(hw_yaml_path, arm, result)
    return result
