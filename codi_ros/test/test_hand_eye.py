"""Hand-eye calibration (perception.hand_eye) on synthetic eye-in-hand recordings, the pairs file and hw.yaml."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from codi_ros.config import load_hardware_config
from codi_ros.frames import mat_to_quat, quat_to_mat, rot_z, tool_down
from codi_ros.paths import config_dir
from codi_ros.perception.aruco import PerceptionError, invert, make_transform, rotation_angle
from codi_ros.perception.hand_eye import (
    DEFAULT_METHOD,
    METHODS,
    HandEyeResult,
    Pair,
    calibrate_file,
    calibrate_hand_eye,
    load_pairs,
    write_hand_eye,
)

T_TCP_CAM = make_transform(quat_to_mat([0.7071068, 0.0, 0.0, -0.7071068]), [0.06, 0.0, -0.0734])   # the sim's mount
T_BASE_MARKER = make_transform(rot_z(0.3), [0.5, 0.05, 0.0])   # a board lying on the table in front of the robot


def axis_angle(axis: np.ndarray, deg: float) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(axis, dtype=float) / np.linalg.norm(axis) * np.radians(deg))[0]


def recording(n: int = 15, seed: int = 0, noise_m: float = 0.0, noise_deg: float = 0.0) -> list[Pair]:
    """n tool poses in a 0.3 m box above the marker, tilted 15-30 deg about random axes from top-down, and the
    marker pose each camera view gives, with Gaussian noise (per axis, m; about a random axis, deg)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        R = tool_down(0.0) @ axis_angle(rng.normal(size=3), rng.uniform(15.0, 30.0))
        T_base_tcp = make_transform(R, np.array([0.5, 0.0, 0.45]) + rng.uniform(-0.15, 0.15, 3))
        T_cam_marker = invert(T_base_tcp @ T_TCP_CAM) @ T_BASE_MARKER
        assert T_cam_marker[2, 3] > 0.2   # in front of the camera
        dR = axis_angle(rng.normal(size=3), rng.normal(0.0, noise_deg))
        pairs.append((T_base_tcp, make_transform(T_cam_marker[:3, :3] @ dR,
                                                 T_cam_marker[:3, 3] + rng.normal(0.0, noise_m, 3))))
    return pairs


def errors(result: HandEyeResult) -> tuple[float, float]:
    """Translation (m) and rotation (deg) error of a result against T_TCP_CAM."""
    T = result.T_tcp_cam
    return (float(np.linalg.norm(T[:3, 3] - T_TCP_CAM[:3, 3])),
            float(np.degrees(rotation_angle(T[:3, :3], T_TCP_CAM[:3, :3]))))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_recovers_the_mount_without_noise(method):
    result = calibrate_hand_eye(recording(), method)
    t_err, r_err = errors(result)
    assert t_err < 1e-4 and r_err < 0.01
    assert result.method == method and result.n_pairs == 15
    assert result.translation_rms_m < 1e-6 and result.rotation_rms_deg < 1e-4
    assert abs(np.linalg.norm(result.quaternion_xyzw) - 1.0) < 1e-9 and result.quaternion_xyzw[3] >= 0


# All five methods pass. Over 1000 seeds of this recording 3 mm / 0.5 deg held for 88-91 % of them (translation is
# the limit: p95 3.3-3.6 mm, rotation p95 < 0.3 deg); seed 0 is one of those for every method.
@pytest.mark.parametrize("method", sorted(METHODS))
def test_recovers_the_mount_with_marker_noise(method):
    result = calibrate_hand_eye(recording(noise_m=0.001, noise_deg=0.2), method)
    t_err, r_err = errors(result)
    assert t_err < 0.003 and r_err < 0.5
    assert 0.0005 < result.translation_rms_m < 0.005 and 0.05 < result.rotation_rms_deg < 1.0


def test_unknown_method_is_refused():
    with pytest.raises(PerceptionError, match="method: 'bogus'"):
        calibrate_hand_eye(recording(), "bogus")
    assert DEFAULT_METHOD in METHODS


def pose_json(T: np.ndarray) -> dict:
    return {"translation": T[:3, 3].tolist(), "quaternion_xyzw": np.roll(mat_to_quat(T[:3, :3]), -1).tolist()}


def pairs_json(pairs: list[Pair], arm: str = "left") -> dict:
    return {"arm": arm, "pairs": [{"tcp_in_base": pose_json(A), "marker_in_camera": pose_json(B)} for A, B in pairs]}


def test_load_pairs_round_trip(tmp_path):
    pairs = recording(noise_m=0.001, noise_deg=0.2)
    data = pairs_json(pairs)
    q = data["pairs"][4]["tcp_in_base"]["quaternion_xyzw"]
    data["pairs"][4]["tcp_in_base"]["quaternion_xyzw"] = [v * 1.0005 for v in q]   # within tolerance: normalised
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(data))
    loaded = load_pairs(path)
    assert len(loaded) == len(pairs)
    for (A, B), (A2, B2) in zip(pairs, loaded, strict=True):
        np.testing.assert_allclose(A2, A, atol=1e-12)
        np.testing.assert_allclose(B2, B, atol=1e-12)
    result = calibrate_hand_eye(loaded).as_dict()
    np.testing.assert_allclose(result["translation"], calibrate_hand_eye(pairs).translation, atol=1e-12)
    assert json.loads(json.dumps(result)) == yaml.safe_load(yaml.safe_dump(result)) == result


def _set_tcp_rotations(data: dict, rotations: list[np.ndarray]) -> None:
    for pair, R in zip(data["pairs"], rotations, strict=True):
        pair["tcp_in_base"]["quaternion_xyzw"] = np.roll(mat_to_quat(R), -1).tolist()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["pairs"][3]["marker_in_camera"].pop("translation"),
     r"pairs\[3\]\.marker_in_camera\.translation: missing"),
    (lambda d: d["pairs"][5].pop("tcp_in_base"), r"pairs\[5\]\.tcp_in_base: missing"),
    (lambda d: d.pop("arm"), r"arm: missing"),
    (lambda d: d["pairs"][1]["tcp_in_base"]["translation"].__setitem__(2, float("nan")),
     r"pairs\[1\]\.tcp_in_base\.translation: NaN"),
    (lambda d: d["pairs"][2]["marker_in_camera"]["translation"].pop(),
     r"pairs\[2\]\.marker_in_camera\.translation: expected a list of 3 numbers"),
    (lambda d: d["pairs"][0]["tcp_in_base"]["translation"].__setitem__(0, "0.5"),
     r"pairs\[0\]\.tcp_in_base\.translation: expected a list of 3 numbers"),
    (lambda d: d["pairs"][6]["tcp_in_base"]["quaternion_xyzw"].__setitem__(3, 2.0),
     r"pairs\[6\]\.tcp_in_base\.quaternion_xyzw: not a unit quaternion"),
    (lambda d: d.__setitem__("pairs", d["pairs"][:2]), r"2 given, need at least 3"),
    (lambda d: _set_tcp_rotations(d, [tool_down(0.0)] * 15), r"same rotation in every pair"),
    (lambda d: _set_tcp_rotations(d, [tool_down(0.0) @ axis_angle([1, 0, 0], a) for a in np.linspace(-30, 30, 15)]),
     r"nearly the same axis"),
])
def test_load_pairs_refuses_malformed_files(tmp_path, edit, message):
    data = pairs_json(recording())
    edit(data)
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_pairs(path)


HW_YAML = """\
# Two real FR3s.
arms:
  left:
    robot_ip: 172.16.0.2
    hand_eye_translation: [0.06, 0.0, -0.0734]              # m: the wrist camera's optical frame in the tool frame
    hand_eye_quaternion_xyzw: [0.0, 0.0, -0.7071068, 0.7071068]
    image_topic: /left/camera/color/image_raw
    camera_info_topic: /left/camera/color/camera_info
  right:
    robot_ip: 172.16.0.3
    hand_eye_translation: [0.06, 0.0, -0.0734]   # right
    hand_eye_quaternion_xyzw: [0.0, 0.0, -0.7071068, 0.7071068]
    image_topic: /right/camera/color/image_raw
    camera_info_topic: /right/camera/color/camera_info
"""

RESULT = HandEyeResult(translation=np.array([0.0612345678, -0.0012, -0.07]),
                       quaternion_xyzw=np.array([0.01, -0.02, -0.7071068, 0.7067]) / np.linalg.norm(
                           [0.01, -0.02, -0.7071068, 0.7067]),
                       method="park", n_pairs=15, translation_rms_m=0.001, rotation_rms_deg=0.1)


@pytest.mark.parametrize("arm, first, line", [   # the comment keeps its column where the value fits before it
    ("left", 4, "    hand_eye_translation: [0.0612346, -0.0012, -0.07]       # m: the wrist camera's optical frame in "
                "the tool frame"),
    ("right", 10, "    hand_eye_translation: [0.0612346, -0.0012, -0.07]  # right"),
])
def test_write_hand_eye_changes_only_the_arms_two_lines(tmp_path, arm, first, line):
    path = tmp_path / "hw.yaml"
    path.write_text(HW_YAML)
    write_hand_eye(path, arm, RESULT)
    old, new = HW_YAML.splitlines(), path.read_text().splitlines()
    assert [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b] == [first, first + 1]
    assert new[first] == line
    data, before = yaml.safe_load(path.read_text()), yaml.safe_load(HW_YAML)
    np.testing.assert_allclose(data["arms"][arm]["hand_eye_quaternion_xyzw"], RESULT.quaternion_xyzw, atol=5e-8)
    before["arms"][arm].update(hand_eye_translation=data["arms"][arm]["hand_eye_translation"],
                               hand_eye_quaternion_xyzw=data["arms"][arm]["hand_eye_quaternion_xyzw"])
    assert data == before
    assert [p.name for p in tmp_path.iterdir()] == ["hw.yaml"]   # no temp file left


@pytest.mark.parametrize("text, arm, message", [
    (HW_YAML, "middle", r"no arm 'middle' \(found \['left', 'right'\]\)"),
    (HW_YAML.replace("    hand_eye_quaternion_xyzw: [0.0, 0.0, -0.7071068, 0.7071068]\n    image_topic: /right", "    "
                     "image_topic: /right"), "right", r"right: hand_eye_quaternion_xyzw: missing"),
    (HW_YAML.replace("arms:", "robots:"), "left", r"no top-level 'arms:'"),
])
def test_write_hand_eye_refuses_and_leaves_the_file(tmp_path, text, arm, message):
    path = tmp_path / "hw.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        write_hand_eye(path, arm, RESULT)
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["hw.yaml"]


def test_write_hand_eye_failure_leaves_the_file(tmp_path, monkeypatch):
    path = tmp_path / "hw.yaml"
    path.write_text(HW_YAML)

    def replace(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        write_hand_eye(path, "left", RESULT)
    assert path.read_text() == HW_YAML
    assert [p.name for p in tmp_path.iterdir()] == ["hw.yaml"]


def test_calibrate_file_writes_the_shipped_hw_yaml_loadably(tmp_path):
    """End to end on a copy of config/hw.yaml: the strict loader accepts the rewritten file."""
    hw = tmp_path / "hw.yaml"
    shutil.copy(config_dir() / "hw.yaml", hw)
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps(pairs_json(recording(noise_m=0.001, noise_deg=0.2), arm="right")))
    result = calibrate_file(pairs, hw)
    assert result.method == DEFAULT_METHOD
    arms = load_hardware_config(hw).arms
    np.testing.assert_allclose(arms["right"].hand_eye_translation, result.translation, atol=5e-8)
    np.testing.assert_allclose(arms["right"].hand_eye_quaternion_xyzw, result.quaternion_xyzw, atol=5e-8)
    assert arms["left"] == load_hardware_config(config_dir() / "hw.yaml").arms["left"]
    assert Path(hw).read_text().count("\n") == (config_dir() / "hw.yaml").read_text().count("\n")


def test_codi_calibrate_hand_eye_writes_hw_yaml_and_refuses_a_bad_pairs_file(tmp_path, capsys):
    """The command a lab runs: the result and residuals printed, the arm's lines written; a file with too few
    pairs refused with the reason, nothing written."""
    from codi_ros.cli import main

    hw = tmp_path / "hw.yaml"
    shutil.copy(config_dir() / "hw.yaml", hw)
    good, bad = tmp_path / "pairs.json", tmp_path / "two.json"
    good.write_text(json.dumps(pairs_json(recording(noise_m=0.001, noise_deg=0.2))))
    bad.write_text(json.dumps(pairs_json(recording(n=2))))
    before = hw.read_text()
    assert main(["calibrate", "hand-eye", "--pairs", str(bad), "--hw-config", str(hw)]) == 1
    assert "pairs" in capsys.readouterr().err and hw.read_text() == before
    assert main(["calibrate", "hand-eye", "--pairs", str(good), "--hw-config", str(hw)]) == 0
    assert "residuals over 15 pairs" in capsys.readouterr().out
    np.testing.assert_allclose(load_hardware_config(hw).arms["left"].hand_eye_translation, T_TCP_CAM[:3, 3], atol=3e-3)
