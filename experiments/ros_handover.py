"""Closed-loop handovers through the ROS 2 graph: the real nodes under rclpy, the simulator in real time.

    .ros-venv/bin/python experiments/ros_handover.py [--episodes 20] [--seed 0]

(.ros-venv: `make test-ros` or scripts/ros_venv.sh.) Starts the graph of launch/two_arm_sim.launch.py
with its defaults (the sim publishes the true cube pose, in-process cost) as processes, then per
episode i (the task of `codi eval`'s episode i with the same seed; the sim starts in episode 0, then
/sim_node/reset moves on): /codi/start, watch the true cube pose for
episode.max_seconds of wall time, /codi/stop, and /codi/recover before the next episode if an arm faulted
(a simulated reflex ends its episode, not the run). Success as in `codi eval`: the cube within
goal.tolerance of the goal at the end. Every node, the simulator and the planner share this machine's
cores, and the simulator runs in real time, as in `codi eval --timing realtime`. Records the delay from
each plan's start to its chunk's arrival (the latency the graph really has), the committed steps of
the chunks, the plans dropped as late (by the coordinator or an action node), the intervals between the first
arm's joint states (as this process receives them), and the slack of its joint trajectories: the time from a
trajectory's arrival here to its first point (negative: it arrived after the point was due; the sim's
controller then starts it part-way). Writes experiments/results/ros_handover.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from codi_msgs.msg import ActionChunk, ArmState, CubeDetection
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from codi_ros.config import load_world_config
from codi_ros.control.smoothness import MotionGeneratorCheck
from codi_ros.nodes._ros import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, stamp_sec
from codi_ros.version import code_version, machine_description

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "codi_ros" / "test"))  # the launch stand-in
from local_graph import LocalGraph  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "ros_handover.json"
FAULT_LINE = "stopping every arm"   # the coordinator's log line when an arm faults (a reflex)
STOP_SETTLE_S = 1.0   # s after /codi/stop before a reset: the stop's trajectory (delivery margin + ramp) is done
WALL_MINUS_MONOTONIC = time.time() - time.monotonic()   # message stamps (wall clock) to receive times (monotonic)
CLOSED_EMPTY_M = 0.01  # m: fingers closer than this hold nothing (the cube is 0.05 m)


def position(msg) -> np.ndarray:
    """The position of a PointStamped, PoseStamped (or CubeDetection) or Pose."""
    p = getattr(msg, "point", None) or getattr(msg, "position", None) or msg.pose.position
    return np.array([p.x, p.y, p.z])


def latency_histogram(seconds: list[float], bin_ms: int = 50) -> dict:
    """Quantiles and a histogram (bins of ``bin_ms``) of delays given in seconds."""
    ms = np.asarray(seconds) * 1e3
    if ms.size == 0:
        return {}
    bins = Counter(int(x // bin_ms) * bin_ms for x in ms)
    return {"p50": round(float(np.percentile(ms, 50)), 1), "p95": round(float(np.percentile(ms, 95)), 1),
            "max": round(float(ms.max()), 1), "count": int(ms.size),
            "histogram": {f"{b}-{b + bin_ms}": n for b, n in sorted(bins.items())}}


def interval_summary(times: list[float]) -> dict:
    """Intervals between successive messages (ms): percentiles and the share longer than 1.5x the median."""
    ms = np.diff(np.asarray(times)) * 1e3
    ms = ms[ms < 1000]                                   # between episodes the arms are stopped, not silent
    if ms.size == 0:
        return {}
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
            "max": round(float(ms.max()), 2), "count": int(ms.size),
            "share_over_1.5x_median": round(float(np.mean(ms > 1.5 * np.median(ms))), 3)}


def longest_closed(records: list, start: float, width: float = CLOSED_EMPTY_M) -> float:
    """The longest stretch (s) after ``start`` in which the arm's fingers stayed closer than ``width``: a
    grasp that closed on nothing (a held cube keeps them at its size) and was not reopened."""
    best, since = 0.0, None
    for t, m in records:
        if t < start:
            continue
        if m.gripper_width < width:
            since = t if since is None else since
            best = max(best, t - since)
        else:
            since = None
    return round(best, 2)


def write_trace(path: Path, start: float, goal: np.ndarray, cubes: list, arm_states: dict[str, list],
                chunks: dict[str, list]) -> None:
    """One episode as received here: the true cube position, each arm's tool position and gripper width
    (world frame), and each arm's chunks (their start from the episode's start, committed steps, commanded
    gripper widths), with their receive times from the episode's start."""
    def since(records):
        return [(round(t - start, 3), m) for t, m in records if t >= start]

    trace = {"goal": goal.round(4).tolist(),
             "cube": [(t, position(m).round(4).tolist()) for t, m in since(cubes) if m.source == "sim_truth"],
             "arms": {a: [(t, position(m.ee_pose).round(4).tolist(),
                           round(m.gripper_width, 4)) for t, m in since(records)]
                      for a, records in arm_states.items()},
             "chunks": {a: [(t, round(stamp_sec(m.header.stamp) - WALL_MINUS_MONOTONIC - start, 3), m.committed,
                             np.round(m.gripper_widths, 4).tolist()) for t, m in since(records)]
                        for a, records in chunks.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trace) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=20, help="handover tasks (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="task seed: episode i is codi eval's episode i of it")
    p.add_argument("--first", type=int, default=0, help="index of the first episode (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results JSON (default %(default)s)")
    p.add_argument("--trace", type=Path, default=None,
                   help="write TRACE/episode_i.json per episode: the cube and each arm's tool and gripper width")
    args = p.parse_args()
    world = load_world_config()
    logs = Path(tempfile.mkdtemp(prefix="ros_handover_"))
    graph = LocalGraph(logs, domain_id=1 + os.getpid() % 100)
    episodes, motion = [], []   # motion: per episode, the sim's 1 kHz report (peaks, FR3 violations)
    try:
        graph.start("sim_node", seed=args.seed, episode=args.first, publish_images=False, publish_true_cube_pose=True)
        graph.start("coordinator_node", autonomous=False, cost_backend="in_process")
        for arm in world.arm_names:
            graph.start("arm_state_node", namespace=arm, arm=arm)
            graph.start("action_node", namespace=arm, arm=arm)
        cubes = graph.record(CubeDetection, "/codi/cube_detections", SENSOR_QOS)
        chunks = {a: graph.record(ActionChunk, f"/{a}/action_chunk", COMMAND_QOS) for a in world.arm_names}
        goals = graph.record(PointStamped, "/codi/goal", LATCHED_QOS)
        slack: list[float] = []   # s from a trajectory's arrival to its first point
        graph.node.create_subscription(
            JointTrajectory, f"/{world.arm_names[0]}/joint_trajectory_controller/joint_trajectory",
            lambda m: slack.append(stamp_sec(m.header.stamp) - time.time()), COMMAND_QOS)
        joint_states = graph.record(JointState, f"/{world.arm_names[0]}/joint_states", SENSOR_QOS, raw=True)
        arm_states = {a: graph.record(ArmState, f"/{a}/arm_state", SENSOR_QOS) for a in world.arm_names}
        latency = [graph.plan_when_ready().latency for _ in range(5)]
        faults = 0
        for i in range(args.first, args.first + args.episodes):
            graph.call(Trigger, "/codi/stop", Trigger.Request())
            graph.spin_for(STOP_SETTLE_S)                        # the arms at rest before they are moved
            if i > args.first:                                   # the sim starts in the first task
                n_goals = len(goals)
                motion.append(json.loads(graph.call(Trigger, "/sim_node/reset", Trigger.Request()).message
                                         .split("motion before: ", 1)[1]))
                graph.spin_until(lambda n=n_goals: len(goals) > n, 5.0)    # the new task's goal
            graph.spin_for(0.5)                                  # fresh states after the reset
            seen = graph.log("coordinator_node").count(FAULT_LINE)
            if seen > faults:                                    # an arm faulted: as a lab would, recover, go on
                faults = seen
                recovered = graph.call(Trigger, "/codi/recover", Trigger.Request(), timeout=60.0)
                print(f"episode {i}: after a fault, /codi/recover: {recovered.message}", flush=True)
                graph.spin_for(0.5)
            graph.call(Trigger, "/codi/start", Trigger.Request())
            start = time.monotonic()
            graph.spin_for(world.episode.max_seconds)
            goal = position(goals[-1][1])
            track = [(t - start, float(np.linalg.norm(position(m) - goal))) for t, m in cubes
                     if t >= start and m.source == "sim_truth"]
            graph.check_alive()
            inside = [t for t, d in track if d <= world.goal.tolerance]
            episodes.append({"episode": i, "success": track[-1][1] <= world.goal.tolerance,
                             "final_distance": round(track[-1][1], 4),
                             "min_distance": round(min(d for _, d in track), 4),
                             "completion_time": round(inside[0], 2) if inside else None,
                             "longest_closed_empty_s": {a: longest_closed(r, start) for a, r in arm_states.items()}})
            print(f"episode {i}: {episodes[-1]}", flush=True)
            if args.trace is not None:
                write_trace(args.trace / f"episode_{i}.json", start, goal, cubes, arm_states, chunks)
        graph.call(Trigger, "/codi/stop", Trigger.Request())
        graph.spin_for(STOP_SETTLE_S)
        motion.append(json.loads(graph.call(Trigger, "/sim_node/reset", Trigger.Request()).message
                                 .split("motion before: ", 1)[1]))
        overruns = graph.log("coordinator_node").count("planning overrun")
        completed = graph.log("coordinator_node").count("handover complete")
        missed = {a: graph.log(f"{a}/action_node").count("nothing grasped") for a in world.arm_names}
        dropped = {"coordinator": graph.log("coordinator_node").count("dropped a late plan"),
                   "action_nodes": sum(graph.log(f"{a}/action_node").count("dropped a late plan")
                                       for a in world.arm_names)}
    finally:
        graph.close()
    # per chunk of the first arm: wall time from its plan's start to its arrival here, and its committed steps
    delays = [(t + WALL_MINUS_MONOTONIC - stamp_sec(m.header.stamp), m.committed)
              for t, m in chunks[world.arm_names[0]]]
    result = {
        "experiment": "ros_handover", "episodes": args.episodes, "seed": args.seed,
        "success_rate": sum(e["success"] for e in episodes) / len(episodes),
        "plan_latency_idle_median_s": round(statistics.median(latency), 3), "planning_overruns": overruns,
        "completed_by_coordinator": completed,   # episodes the coordinator ended itself: cube at the goal, released
        "chunk_delay_ms": latency_histogram([d for d, _ in delays]),   # plan start -> chunk received: latency
        "committed_steps": {str(c): n for c, n in sorted(Counter(c for _, c in delays).items())},
        "grasps_missed": missed,   # franka_gripper grasps that closed on nothing, per arm (action node logs)
        "plans_dropped": dropped,   # late plans, dropped by the coordinator (before sending) or an action node
        "trajectory_slack_ms": latency_histogram(slack, bin_ms=10),   # arrival -> first point (< 0: late)
        "joint_state_interval_ms": interval_summary([t for t, _ in joint_states]),
        # the simulated FR3's check of the 1 kHz command streams (each violation a reflex, ros.yaml)
        "fr3_violations": sum(m[a]["violations"] for m in motion for a in m),
        "faults_recovered": faults,   # each ended its episode; /codi/recover before the next
        "episodes_with_violations": sum(any(m[a]["violations"] for a in m) for m in motion),
        "late_trajectories": sum(m[a]["late_trajectories"] for m in motion for a in m),
        "peak_1khz": {q: max(m[a]["peaks"][q] for m in motion for a in m) for q in MotionGeneratorCheck.QUANTITIES},
        "peak_1khz_p50_episode": {q: float(np.median([max(m[a]["peaks"][q] for a in m) for m in motion]))
                                  for q in MotionGeneratorCheck.QUANTITIES},
        "per_episode": [{**e, "motion": m} for e, m in zip(episodes, motion, strict=True)],
        "logs": str(logs), "machine": machine_description(), "code_version": code_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"success {result['success_rate']:.0%} over {args.episodes} episodes -> {args.out}")


if __name__ == "__main__":
    main()
