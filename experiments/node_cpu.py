"""CPU use of every node of the simulated graph, idle and while the coordinator plans.

    .ros-venv/bin/python experiments/node_cpu.py [--seconds 10] [--out experiments/results/node_cpu.json]

Starts the graph of launch/two_arm_sim.launch.py with its defaults (true cube pose, in-process cost)
as processes (codi_ros/test/local_graph.py), waits until the coordinator answers a plan, then reads each
process's CPU time (/proc/PID/stat, user + system) over ``--seconds`` twice: with the arms idle, and
in autonomous mode (the coordinator planning at 10 Hz, the arms moving). Reports % of one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from std_srvs.srv import Trigger

from codi_ros.config import load_world_config
from codi_ros.version import code_version, machine_description

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "codi_ros" / "test"))  # the launch stand-in
from local_graph import LocalGraph  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "node_cpu.json"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS    # utime, stime


def measure(graph: LocalGraph, seconds: float) -> dict[str, float]:
    start = {k: cpu_seconds(p.pid) for k, p in graph.procs.items()}
    t0 = time.monotonic()
    graph.spin_for(seconds)
    wall = time.monotonic() - t0
    return {k: round(100 * (cpu_seconds(p.pid) - start[k]) / wall, 1) for k, p in graph.procs.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="measuring window per phase (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results JSON (default %(default)s)")
    args = p.parse_args()
    world = load_world_config()
    graph = LocalGraph(Path(tempfile.mkdtemp(prefix="node_cpu_")), domain_id=1 + os.getpid() % 100)
    try:
        graph.start("sim_node", publish_images=False, publish_true_cube_pose=True)
        graph.start("coordinator_node", autonomous=False, cost_backend="in_process")
        for arm in world.arm_names:
            graph.start("arm_state_node", namespace=arm, arm=arm)
            graph.start("action_node", namespace=arm, arm=arm)
        graph.plan_when_ready()
        graph.spin_for(2.0)
        idle = measure(graph, args.seconds)
        graph.call(Trigger, "/codi/start", Trigger.Request())
        planning = measure(graph, args.seconds)
        graph.call(Trigger, "/codi/stop", Trigger.Request())
        graph.check_alive()
    finally:
        graph.close()
    result = {"experiment": "node_cpu", "unit": "% of one core", "seconds": args.seconds, "idle": idle,
              "planning": planning, "machine": machine_description(), "code_version": code_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for key in idle:
        print(f"{key:22s} idle {idle[key]:5.1f} %   planning {planning[key]:5.1f} %")


if __name__ == "__main__":
    main()
