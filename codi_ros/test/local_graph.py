"""Start codi_ros nodes as processes the way a launch file does, and talk to them from this process.

For the node tests and experiments in environments with rclpy but without launch_ros (the PyPI ROS 2
wheels: scripts/ros_venv.sh). Each node is a codi_ros console script next to this interpreter, run
with ``--ros-args``: its node name, namespace, config/ros.yaml as parameter file, remaps and
``-p`` parameters. All processes and the client node share one ROS_DOMAIN_ID, discovery on localhost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from codi_msgs.srv import Plan
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from codi_ros.paths import config_dir

STARTUP_S = 120.0      # longest wait for a service: every node process imports torch and MuJoCo
ANSWER_S = 15.0        # longest wait for one answer while a graph starts up (a lost answer is asked again)


class LocalGraph:
    """Node processes (logs in ``logs``) and a client node ``client`` spun by the caller's waits."""

    def __init__(self, logs: Path, domain_id: int, params_file: Path | None = None):
        self.logs, self.params_file = Path(logs), params_file or config_dir() / "ros.yaml"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                    "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node("client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._clients: dict[tuple[type, str], Any] = {}

    def start(self, executable: str, namespace: str = "", remap: dict[str, str] | None = None,
              env: dict[str, str] | None = None, **params: Any) -> None:
        """Run ``executable`` (a codi_ros console script) as node ``executable`` in ``namespace``."""
        args = ["--ros-args", "-r", f"__node:={executable}", "--params-file", str(self.params_file)]
        if namespace:
            args += ["-r", f"__ns:=/{namespace}"]
        for src, dst in (remap or {}).items():
            args += ["-r", f"{src}:={dst}"]
        for name, value in params.items():
            args += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
        key = f"{namespace}/{executable}" if namespace else executable
        with open(self._log_path(key), "w") as log:
            self.procs[key] = subprocess.Popen([str(Path(sys.executable).with_name(executable)), *args], stdout=log,
                                               stderr=subprocess.STDOUT, env={**self.env, **(env or {})})

    def _log_path(self, key: str) -> Path:
        return self.logs / f"{key.replace('/', '.')}.log"

    def log(self, key: str) -> str:
        """Everything node ``key`` ("sim_node", "left/action_node") printed so far."""
        return self._log_path(key).read_text()

    def check_alive(self) -> None:
        """Raise RuntimeError with their logs' ends if node processes have exited."""
        dead = {k: p.returncode for k, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"node processes exited: {dead}\n" + "\n".join(self.log(k)[-3000:] for k in dead))

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)
        return done()

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def call(self, srv_type: type, name: str, request: Any, timeout: float = 60.0) -> Any:
        """The response of service ``name``; TimeoutError when it is not served or does not answer.

        One client per service, kept for later calls: a service whose answer is ready before it has
        discovered a new client's response reader drops it ("failed to send response (timeout)" in the
        server's log), which a client made for each call met now and then on loaded cores."""
        client = self._clients.get((srv_type, name))
        if client is None:
            client = self._clients[srv_type, name] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=STARTUP_S):
            raise TimeoutError(f"{name} is not served")
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout):
            client.remove_pending_request(future)
            raise TimeoutError(f"{name}: no answer in {timeout} s")
        return future.result()

    def plan_when_ready(self, timeout: float = STARTUP_S, service: str = "/codi/plan") -> Any:
        """The first successful answer to an empty (latest observed state) plan request: a coordinator
        answers "no arm state received yet" until its subscriptions have data. TimeoutError after ``timeout``."""
        end = time.monotonic() + timeout
        while True:
            try:   # an answer sent before the server discovered this client's reader is lost: ask again
                response = self.call(Plan, service, Plan.Request(), timeout=min(max(end - time.monotonic(), 1.0),
                                                                                 ANSWER_S))
            except TimeoutError:
                if time.monotonic() > end:
                    raise
                continue
            if response.success:
                return response
            if time.monotonic() > end:
                raise TimeoutError(f"{service} did not plan within {timeout} s: {response.message}")
            self.spin_for(0.2)

    def record(self, msg_type: type, topic: str, qos: Any, raw: bool = False) -> list[tuple[float, Any]]:
        """(receive time, message) of every message on ``topic`` from now on; ``raw``: the serialized bytes
        (cheaper: for arrival times of a fast topic, without costing the cores the graph runs on)."""
        received: list[tuple[float, Any]] = []
        self.node.create_subscription(msg_type, topic, lambda m: received.append((time.monotonic(), m)), qos, raw=raw)
        return received

    def interrupt(self, key: str, timeout: float = 15.0) -> int:
        """Ctrl-C node ``key``, as `ros2 launch` does on shutdown (kill it after ``timeout``); its exit status."""
        proc = self.procs[key]
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def close(self) -> None:
        for key, proc in self.procs.items():
            if proc.poll() is None:
                self.interrupt(key, timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
