"""Messages as plain dicts, and their conversion to and from the core types.

A message is the nested dict that :func:`codi_ros.ros.msg_dict.to_dict` gives and
:func:`~codi_ros.ros.msg_dict.fill` takes (the shape ``ros2 topic pub`` and ``ros2 service
call`` use). Missing keys read as the message defaults (0, "", [], identity quaternion), exactly
like an empty ``ros2 service call``. Quaternions are (w, x, y, z) in the core (frames.py) and
fields x, y, z, w in geometry_msgs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from codi_ros.control.executor import Chunk, ChunkError
from codi_ros.control.trajectory import JointTrajectory, TrajectoryError
from codi_ros.frames import ArmState, BaseFrame, mat_to_quat, quat_to_mat
from codi_ros.perception.fusion import Detection

Msg = Mapping[str, Any]


def stamp_to_ns(stamp: Msg) -> int:
    return int(stamp.get("sec", 0)) * 1_000_000_000 + int(stamp.get("nanosec", 0))


def ns_to_sec(ns: int) -> float:
    return ns // 1_000_000_000 + 1e-9 * (ns % 1_000_000_000)


def sec_to_ns(t: float) -> int:
    """Seconds to integer nanoseconds, within 1 ns and the same for the same float (``round(t * 1e9)`` at epoch
    times rounds to 256 ns, differently for a sum taken another way)."""
    sec = math.floor(t)
    return sec * 1_000_000_000 + round((t - sec) * 1e9)


def stamp_to_sec(stamp: Msg) -> float:
    return ns_to_sec(stamp_to_ns(stamp))


def ns_to_stamp(ns: int) -> dict:
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def sec_to_stamp(t: float) -> dict:
    return ns_to_stamp(sec_to_ns(t))


def header(t: float, frame_id: str) -> dict:
    return {"stamp": sec_to_stamp(t), "frame_id": frame_id}


def header_time(msg: Msg) -> float:
    return stamp_to_sec(msg.get("header", {}).get("stamp", {}))


def parse_vec3(d: Msg) -> np.ndarray:
    """x, y, z of a Point / Vector3 dict."""
    return np.array([float(d.get("x", 0.0)), float(d.get("y", 0.0)), float(d.get("z", 0.0))])


def vec3_msg(v: np.ndarray) -> dict:
    return {"x": float(v[0]), "y": float(v[1]), "z": float(v[2])}


def parse_quat(d: Msg) -> np.ndarray:
    """(w, x, y, z) of a geometry_msgs/Quaternion dict (default: identity)."""
    return np.array([float(d.get("w", 1.0)), float(d.get("x", 0.0)), float(d.get("y", 0.0)), float(d.get("z", 0.0))])


def pose_msg(pos: np.ndarray, q_wxyz: np.ndarray) -> dict:
    w, x, y, z = (float(c) for c in q_wxyz)
    return {"position": vec3_msg(pos), "orientation": {"x": x, "y": y, "z": z, "w": w}}


def parse_pose(d: Msg) -> tuple[np.ndarray, np.ndarray]:
    """(position (3,), quaternion (w, x, y, z)) of a geometry_msgs/Pose dict."""
    return parse_vec3(d.get("position", {})), parse_quat(d.get("orientation", {}))


def twist_msg(v6: np.ndarray) -> dict:
    return {"linear": vec3_msg(v6[:3]), "angular": vec3_msg(v6[3:6])}


def parse_twist(d: Msg) -> np.ndarray:
    return np.concatenate([parse_vec3(d.get("linear", {})), parse_vec3(d.get("angular", {}))])


# --------------------------------------------------------------------------- codi_msgs/ArmState

def arm_state_msg(arm: str, state: ArmState, stamp: float, frame_id: str = "world",
                  joints: tuple[np.ndarray, np.ndarray] | None = None, fault: str = "") -> dict:
    """``joints``: the arm's (q, qdot), 7 each, when known; ``fault``: why it cannot move ("": it can)."""
    q, qdot = ([], []) if joints is None else ([float(x) for x in joints[0]], [float(x) for x in joints[1]])
    return {"header": header(stamp, frame_id), "arm": arm,
            "ee_pose": pose_msg(state.ee_pos, mat_to_quat(state.ee_rot)),
            "ee_twist": twist_msg(np.concatenate([state.ee_linvel, state.ee_angvel])),
            "gripper_width": float(state.gripper_width), "joint_positions": q, "joint_velocities": qdot,
            "fault": fault}


def parse_arm_state(msg: Msg) -> tuple[str, ArmState, float]:
    """(arm name, world-frame ArmState, stamp). A zero quaternion gives a NaN rotation (caught as NaN)."""
    pos, q = parse_pose(msg.get("ee_pose", {}))
    v = parse_twist(msg.get("ee_twist", {}))
    rot = quat_to_mat(q) if np.linalg.norm(q) > 1e-9 else np.full((3, 3), np.nan)
    state = ArmState(ee_pos=pos, ee_rot=rot, ee_linvel=v[:3], ee_angvel=v[3:],
                     gripper_width=float(msg.get("gripper_width", 0.0)))
    return str(msg.get("arm", "")), state, header_time(msg)


def parse_arm_joints(msg: Msg) -> tuple[np.ndarray, np.ndarray] | None:
    """(q, qdot) of an ArmState message, or None unless both are 7 finite numbers."""
    q, qdot = (np.asarray(msg.get(k, []), dtype=float) for k in ("joint_positions", "joint_velocities"))
    if q.shape != (7,) or qdot.shape != (7,) or not (np.all(np.isfinite(q)) and np.all(np.isfinite(qdot))):
        return None
    return q, qdot


# --------------------------------------------------------------------------- codi_msgs/ActionChunk

def chunk_msg(arm: str, chunk: Chunk) -> dict:
    """An ActionChunk in the arm's base frame ``base_<arm>``."""
    return {"header": header(chunk.start, f"base_{arm}"), "arm": arm, "dt": float(chunk.dt),
            "twists": [twist_msg(a[:6]) for a in chunk.actions],
            "gripper_widths": [float(a[6]) for a in chunk.actions], "committed": int(chunk.committed)}


def stop_msg(arm: str, now: float, dt: float) -> dict:
    """The empty chunk that tells an action node to stop."""
    return chunk_msg(arm, Chunk(now, dt, np.zeros((0, 7))))


PATH_COLORS = ((0.1, 0.45, 0.9), (0.9, 0.45, 0.1))   # the first arm's planned path blue, the second's orange


def planned_path_marker(index: int, chunk: Chunk, tool: np.ndarray, frame: BaseFrame) -> dict:
    """visualization_msgs/Marker (namespace ``planned_tool_path``, id ``index``: one per arm) of the tool path a
    chunk plans, in the world frame for RViz: its linear velocities (base frame ``frame``) integrated from the
    tool position ``tool`` (world), the workspace box and the IK's limits left out; shown while the chunk
    lasts. A chunk without actions (a stop) deletes the arm's path."""
    marker = {"header": header(chunk.start, "world"), "ns": "planned_tool_path", "id": index}
    if not len(chunk.actions):
        return {**marker, "action": 2}                                      # DELETE
    steps = np.array([frame.vec_to_world(a[:3]) for a in chunk.actions]) * chunk.dt
    points = np.asarray(tool, dtype=float) + np.vstack([np.zeros(3), np.cumsum(steps, axis=0)])
    r, g, b = PATH_COLORS[index % len(PATH_COLORS)]
    return {**marker, "type": 4, "action": 0, "pose": {"orientation": {"w": 1.0}},   # LINE_STRIP, ADD
            "scale": {"x": 0.006}, "color": {"r": r, "g": g, "b": b, "a": 1.0},
            "lifetime": sec_to_stamp(chunk.end - chunk.start), "points": [vec3_msg(p) for p in points]}


def parse_chunk(msg: Msg) -> tuple[str, str, Chunk]:
    """(arm, frame_id, Chunk); raises ChunkError naming the bad field."""
    twists = [parse_twist(t) for t in msg.get("twists", [])]
    widths = [float(w) for w in msg.get("gripper_widths", [])]
    if len(twists) != len(widths):
        raise ChunkError(f"gripper_widths: {len(widths)} values for {len(twists)} twists")
    actions = np.column_stack([np.reshape(twists, (-1, 6)), widths]) if twists else np.zeros((0, 7))
    hdr = msg.get("header", {})
    return (str(msg.get("arm", "")), str(hdr.get("frame_id", "")),
            Chunk(header_time(msg), float(msg.get("dt", 0.0)), actions, int(msg.get("committed", 0))))


# --------------------------------------------------------------------------- trajectory_msgs/JointTrajectory

def trajectory_msg(trajectory: JointTrajectory, joint_names: Sequence[str]) -> dict:
    """A JointTrajectory of the arm's joints, stamped with its first point's time (the gripper widths stay
    out: the hand takes franka_gripper goals, :mod:`codi_ros.control.gripper`)."""
    ns = [sec_to_ns(float(t)) for t in trajectory.times]   # each point's own time, as in the trajectory sent before:
    acc = trajectory.accelerations                          # a controller joining the two sees no step between them
    points = [{"positions": trajectory.positions[k].tolist(), "velocities": trajectory.velocities[k].tolist(),
               "accelerations": [] if acc is None else acc[k].tolist(),
               "time_from_start": ns_to_stamp(ns[k] - ns[0])} for k in range(len(ns))]
    return {"header": {"stamp": ns_to_stamp(ns[0]), "frame_id": ""}, "joint_names": list(joint_names),
            "points": points}


def parse_trajectory(msg: Msg, joint_names: Sequence[str]) -> JointTrajectory:
    """The arm's trajectory in a JointTrajectory dict (no gripper widths: NaN); raises TrajectoryError naming
    the field. Joints may come in any order; velocities may be left out (zero), accelerations too (then the
    controller splines cubically, as ros2_control's does), but in every point or none."""
    names = [str(n) for n in msg.get("joint_names", [])]
    missing = [n for n in joint_names if n not in names]
    if missing:
        raise TrajectoryError(f"joint_names: missing {missing} (got {names})")
    index = [names.index(n) for n in joint_names]
    t0, times, q, v, a = stamp_to_ns(msg.get("header", {}).get("stamp", {})), [], [], [], []
    for i, point in enumerate(msg.get("points", [])):
        pos = np.asarray(point.get("positions", []), dtype=float)
        vel = np.asarray(point.get("velocities", []) or np.zeros(len(names)), dtype=float)
        acc = np.asarray(point.get("accelerations", []), dtype=float)
        if pos.shape != (len(names),) or vel.shape != (len(names),) or acc.size not in (0, len(names)):
            raise TrajectoryError(f"points[{i}]: {len(names)} positions, velocities (or none) and accelerations "
                                  f"(or none) needed, got {pos.size}, {vel.size} and {acc.size}")
        times.append(ns_to_sec(t0 + stamp_to_ns(point.get("time_from_start", {}))))   # a point's time one way only
        q.append(pos[index])
        v.append(vel[index])
        a.append(acc[index] if acc.size else None)
    if not times:
        raise TrajectoryError("points: empty")
    if len({x is None for x in a}) > 1:
        raise TrajectoryError("points: accelerations in some points but not in others")
    return JointTrajectory(np.array(times), np.array(q), np.array(v), np.full(len(times), np.nan),
                           None if a[0] is None else np.array(a))


# --------------------------------------------------------------------------- codi_msgs/CubeDetection

def detection_msg(d: Detection, frame_id: str = "world") -> dict:
    return {"header": header(d.stamp, frame_id), "source": d.source, "pose": pose_msg(d.pos, d.quat),
            "reprojection_error": float(d.reprojection_error), "num_markers": int(d.num_markers),
            "ambiguous": bool(d.ambiguous)}


def parse_detection(msg: Msg) -> Detection:
    pos, q = parse_pose(msg.get("pose", {}))
    return Detection(source=str(msg.get("source", "")), stamp=header_time(msg), pos=pos, quat=q,
                     reprojection_error=float(msg.get("reprojection_error", 0.0)),
                     num_markers=int(msg.get("num_markers", 0)), ambiguous=bool(msg.get("ambiguous", False)))
