"""Message dicts <-> core types, and rosidl message objects <-> dicts (no rclpy)."""

from __future__ import annotations

import array
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from logic_fakes import chunk_of

from codi_ros.control.executor import ChunkError
from codi_ros.frames import mat_to_quat, rot_z
from codi_ros.perception.fusion import Detection
from codi_ros.ros.messages import (
    arm_state_msg,
    chunk_msg,
    detection_msg,
    parse_arm_state,
    parse_chunk,
    parse_detection,
    pose_msg,
)
from codi_ros.ros.msg_dict import fill, to_dict


class FakeMessage:
    """Mimics a rosidl-generated Python message: typed fields, a field table, setters that check types."""

    FIELDS: dict[str, str] = {}
    DEFAULTS: dict[str, object] = {}

    def __init__(self):
        for name in self.FIELDS:
            object.__setattr__(self, name, self.DEFAULTS[name]() if callable(self.DEFAULTS[name])
                               else self.DEFAULTS[name])

    @classmethod
    def get_fields_and_field_types(cls):
        return dict(cls.FIELDS)

    def __setattr__(self, name, value):
        assert name in self.FIELDS, name
        default = self.DEFAULTS[name]
        if isinstance(default, float):
            assert isinstance(value, float), f"The '{name}' field must be of type 'float'"
        object.__setattr__(self, name, value)


class FakeVector(FakeMessage):
    FIELDS = {"x": "double", "y": "double"}
    DEFAULTS = {"x": 0.0, "y": 0.0}


class FakeChunk(FakeMessage):
    FIELDS = {"arm": "string", "origin": "fake_msgs/Vector", "points": "sequence<fake_msgs/Vector>",
              "widths": "sequence<double>", "k": "double[3]"}
    DEFAULTS = {"arm": "", "origin": FakeVector, "points": list, "widths": lambda: array.array("d"),
                "k": lambda: np.zeros(3)}


def test_message_objects_convert_to_and_from_plain_dicts(monkeypatch):
    monkeypatch.setitem(sys.modules, "fake_msgs.msg", SimpleNamespace(Vector=FakeVector))
    values = {"arm": "left", "origin": {"x": 1, "y": 2.5}, "points": [{"x": 0.5}, {"y": -1.0}],
              "widths": [0.04, 0.08], "k": [1.0, 2.0, 3.0]}
    msg = fill(FakeChunk(), values)
    assert isinstance(msg.origin.x, float) and msg.origin.x == 1.0          # an int for a float field
    assert [type(p) for p in msg.points] == [FakeVector, FakeVector] and msg.points[1].y == -1.0
    assert to_dict(msg) == {**values, "origin": {"x": 1.0, "y": 2.5},
                            "points": [{"x": 0.5, "y": 0.0}, {"x": 0.0, "y": -1.0}]}
    msg.widths, msg.k = array.array("d", [0.01]), np.array([4.0, 5.0, 6.0])
    assert to_dict(msg)["widths"] == [0.01] and to_dict(msg)["k"] == [4.0, 5.0, 6.0]
    with pytest.raises(ValueError, match="FakeChunk has no field 'gripper'"):
        fill(FakeChunk(), {"gripper": 0.08})
    with pytest.raises(ValueError, match=r"FakeVector\.x: .*float"):
        fill(FakeChunk(), {"origin": {"x": [1.0]}})


def test_message_dicts_round_trip_and_use_ros_quaternion_order():
    q = mat_to_quat(rot_z(0.4))
    assert pose_msg(np.zeros(3), q)["orientation"] == pytest.approx({"x": 0, "y": 0, "z": q[3], "w": q[0]})
    c = chunk_of([0.1, -0.2, 0.3, 0.4, -0.5, 0.6], n=3, start=12.345, width=0.02)
    arm, frame, back = parse_chunk(chunk_msg("right", c))
    assert (arm, frame) == ("right", "base_right") and back.start == pytest.approx(12.345)
    np.testing.assert_allclose(back.actions, c.actions)
    d = Detection("left", 3.5, np.array([0.1, 0.2, 0.03]), q, 0.7, 2, True)
    back_d = parse_detection(detection_msg(d))
    assert back_d.source == "left" and back_d.ambiguous and back_d.num_markers == 2
    np.testing.assert_allclose(back_d.quat, q)
    with pytest.raises(ChunkError, match="gripper_widths"):
        parse_chunk({"twists": [{}], "gripper_widths": []})


def test_arm_state_message_round_trip(world):
    world.reset()
    s = world.arm_state("left")
    arm, back, stamp = parse_arm_state(arm_state_msg("left", s, 7.25))
    assert arm == "left" and stamp == pytest.approx(7.25)
    np.testing.assert_allclose(back.ee_rot, s.ee_rot, atol=1e-12)
    np.testing.assert_allclose(back.ee_pos, s.ee_pos)
