"""Closed-loop handovers through the ROS 2 graph: the real nodes under rclpy, the simulator in real time.

    .ros-venv/bin/python experiments/ros_handover.py [--episodes 10] [--seed 0]

(.ros-venv: `make test-ros` or scripts/ros_venv.sh.) Starts the graph of launch/two_arm_sim.launch.py
with its defaults (the sim publishes the true cube pose, in-process cost) as processes, then per
episode i (the task of `codi eval`'s episode i with the same seed; the sim starts in episode 0, then
/sim_node/reset moves on): /codi/start, watch the true cube pose for
episode.max_seconds of wall time, /codi/stop. Success as in `codi eval`: the cube within
goal.tolerance of the goal at the end. Every node, the simulator and the planner share this machine's
cores, and the simulator runs in real time, so planning latency costs motion here (`codi eval` steps
the simulator while the planner plans). Writes experiments/results/ros_handover.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from codi_msgs.msg import CubeDetection
from geometry_msgs.msg import PointStamped
from std_srvs.srv import Trigger

from codi_ros.config import load_world_config
from codi_ros.nodes._ros import LATCHED_QOS, SENSOR_QOS
from codi_ros.nodes.local_graph import LocalGraph
from codi_ros.version import code_version, machine_description

RESULTS = Path(__file__).resolve().parent / "results" / "ros_handover.json"


def position(msg) -> np.ndarray:
    p = getattr(msg, "point", None) or msg.pose.position
    return np.array([p.x, p.y, p.z])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=10, help="handover tasks (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="task seed: episode i is codi eval's episode i of it")
    p.add_argument("--out", type=Path, default=RESULTS, help="results JSON (default %(default)s)")
    args = p.parse_args()
    world = load_world_config()
    logs = Path(tempfile.mkdtemp(prefix="ros_handover_"))
    graph = LocalGraph(logs, domain_id=1 + os.getpid() % 100)
    episodes = []
    try:
        graph.start("sim_node", seed=args.seed, publish_images=False, publish_true_cube_pose=True)
        graph.start("coordinator_node", autonomous=False, cost_backend="in_process")
        for arm in world.arm_names:
            graph.start("arm_state_node", namespace=arm, arm=arm)
            graph.start("action_node", namespace=arm, arm=arm)
        cubes = graph.record(CubeDetection, "/codi/cube_detections", SENSOR_QOS)
        goals = graph.record(PointStamped, "/codi/goal", LATCHED_QOS)
        latency = [graph.plan_when_ready().latency for _ in range(5)]
        for i in range(args.episodes):
            graph.call(Trigger, "/codi/stop", Trigger.Request())
            if i > 0:                                            # episode 0 is the sim's first task
                n_goals = len(goals)
                graph.call(Trigger, "/sim_node/reset", Trigger.Request())
                graph.spin_until(lambda n=n_goals: len(goals) > n, 5.0)    # the new task's goal
            graph.spin_for(0.5)                                  # fresh states after the reset
            graph.call(Trigger, "/codi/start", Trigger.Request())
            start = time.monotonic()
            graph.spin_for(world.episode_max_seconds)
            goal = position(goals[-1][1])
            track = [(t - start, float(np.linalg.norm(position(m) - goal))) for t, m in cubes
                     if t >= start and m.source == "sim_truth"]
            graph.check_alive()
            inside = [t for t, d in track if d <= world.goal.tolerance]
            episodes.append({"episode": i, "success": track[-1][1] <= world.goal.tolerance,
                             "final_distance": round(track[-1][1], 4),
                             "min_distance": round(min(d for _, d in track), 4),
                             "completion_time": round(inside[0], 2) if inside else None})
            print(f"episode {i}: {episodes[-1]}", flush=True)
        graph.call(Trigger, "/codi/stop", Trigger.Request())
        overruns = graph.log("coordinator_node").count("planning overrun")
    finally:
        graph.close()
    result = {
        "experiment": "ros_handover", "episodes": args.episodes, "seed": args.seed,
        "success_rate": sum(e["success"] for e in episodes) / len(episodes),
        "plan_latency_idle_median_s": round(statistics.median(latency), 3), "planning_overruns": overruns,
        "per_episode": episodes, "logs": str(logs), "machine": machine_description(), "code_version": code_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"success {result['success_rate']:.0%} over {args.episodes} episodes -> {args.out}")


if __name__ == "__main__":
    main()
