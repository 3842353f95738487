"""Static checks of the ROS layer: launch files vs node executables and parameters, and the interfaces."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import check_ros_static  # noqa: E402

LAUNCH = "launch/two_arm_sim.launch.py"
PARAMS = "config/ros_sim.yaml"


def test_launch_files_and_parameters_match_the_nodes(capsys):
    assert check_ros_static.main(REPO) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "6 node executables" in out and "two_arm_sim.launch.py: 6 nodes" in out


@pytest.fixture()
def repo_copy(tmp_path: Path) -> Path:
    for d in ("launch", "config", "codi_ros/codi_ros"):
        shutil.copytree(REPO / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "codi_ros/setup.py", tmp_path / "codi_ros/setup.py")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


MUTATIONS = {
    "unknown executable": (LAUNCH, 'executable="cost_service_node"', 'executable="planner_node"',
                           "'planner_node' is not in NODE_ENTRY_POINTS"),
    "undeclared inline parameter": (LAUNCH, '{"arm": arm}', '{"arm_name": arm}',
                                    "does not declare parameter 'arm_name'"),
    "undeclared yaml parameter": (PARAMS, "    state_timeout: 0.2", "    state_timeout: 0.2\n    rate: 100.0",
                                  "action_node does not declare parameter 'rate'"),
    "integer for a double": (PARAMS, "    state_timeout: 0.2", "    state_timeout: 1",
                             "is a integer, declared as double"),
    "yaml section of no launched node": (PARAMS, "/left/action_node:", "/middle/action_node:",
                                         "section /middle/action_node matches no node"),
    "launch syntax error": (LAUNCH, "def generate_launch_description():", "def generate_launch_description(:",
                            "does not compile"),
    "parameter read but not declared": ("codi_ros/codi_ros/nodes/sim_node.py", 'param(self, "seed")',
                                        'param(self, "sead")', "reads parameter 'sead' but never declares it"),
    "entry point without module": ("codi_ros/setup.py", "codi_ros.nodes.aruco_node:main",
                                   "codi_ros.nodes.aruco:main", "module codi_ros.nodes.aruco not found"),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_checker_catches(name, repo_copy, capsys):
    path, old, new, expected = MUTATIONS[name]
    edit(repo_copy / path, old, new)
    assert check_ros_static.main(repo_copy) == 1
    assert expected in capsys.readouterr().out


def run_interface_check(pkg: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts/check_interfaces.sh"), str(pkg)], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "CODI_APT_INSTALL": "0"}, timeout=120)


def test_interfaces_parse_with_rosidl(tmp_path):
    result = run_interface_check(REPO / "codi_msgs")
    if "SKIPPED" in result.stdout:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0 and "0 errors" in result.stdout, result.stdout + result.stderr
    broken = tmp_path / "codi_msgs"
    shutil.copytree(REPO / "codi_msgs", broken)
    edit(broken / "msg/ArmState.msg", "geometry_msgs/Twist ee_twist", "geometry_msgs/Twists ee_twist")
    result = run_interface_check(broken)
    assert result.returncode == 1 and "no message geometry_msgs/Twists" in result.stdout


def test_the_simulated_graph_is_reachable_only_from_this_machine_unless_asked_and_takes_an_enclave():
    """Who may call /codi/plan: discovery on localhost and a domain of its own by default; an SROS2 enclave
    on request (the launch files cannot run here: no launch wheels; this reads what they declare and set)."""
    tree = ast.parse((REPO / LAUNCH).read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    declared = {ast.literal_eval(c.args[0]): c for c in calls if c.func.id == "DeclareLaunchArgument"}
    env = {ast.literal_eval(c.args[0]): c for c in calls if c.func.id == "SetEnvironmentVariable"}
    assert {"discovery_range", "domain_id", "enclave"} <= set(declared)
    default = {k.arg: k.value for k in declared["discovery_range"].keywords}["default_value"]
    assert ast.literal_eval(default) == "LOCALHOST"
    assert {"ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_SECURITY_ENCLAVE_OVERRIDE"} <= set(env)
    assert "condition" in {k.arg for k in env["ROS_SECURITY_ENCLAVE_OVERRIDE"].keywords}   # none by default
