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

NODES = "launch/codi_nodes.launch.py"      # our nodes, included by both top-level launch files
SIM, HW = "launch/two_arm_sim.launch.py", "launch/two_arm_hw.launch.py"
PARAMS = "config/ros.yaml"
CONTROLLERS = "config/franka_controllers.yaml"


def test_launch_files_and_parameters_match_the_nodes(capsys):
    assert check_ros_static.main(REPO) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "6 node executables" in out and "two_arm_sim.launch.py: 6 nodes" in out   # sim_node + ours
    assert "two_arm_hw.launch.py: 5 nodes" in out and "2 arms' controllers" in out      # ours, beside franka_ros2


@pytest.fixture()
def repo_copy(tmp_path: Path) -> Path:
    for d in ("launch", "config", "codi_ros/codi_ros"):
        shutil.copytree(REPO / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("setup.py", "package.xml"):
        shutil.copy(REPO / "codi_ros" / f, tmp_path / "codi_ros" / f)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


MUTATIONS = {
    "unknown executable": (NODES, 'executable="cost_service_node"', 'executable="planner_node"',
                           "'planner_node' is not in NODE_ENTRY_POINTS"),
    "undeclared inline parameter": (NODES, '{"arm": arm}', '{"arm_name": arm}',
                                    "does not declare parameter 'arm_name'"),
    "undeclared hw.yaml parameter": (NODES, '{"hand_eye_translation":', '{"hand_eye_offset":',
                                     "aruco_node does not declare parameter 'hand_eye_offset'"),
    "undeclared yaml parameter": (PARAMS, "    state_timeout: 0.2", "    state_timeout: 0.2\n    rate: 100.0",
                                  "action_node does not declare parameter 'rate'"),
    "integer for a double": (PARAMS, "    state_timeout: 0.2", "    state_timeout: 1",
                             "is a integer, declared as double"),
    "yaml section of no launched node": (PARAMS, "/left/action_node:", "/middle/action_node:",
                                         "section /middle/action_node matches no node"),
    "launch syntax error": (SIM, "def generate_launch_description():", "def generate_launch_description(:",
                            "does not compile"),
    "parameter read but not declared": ("codi_ros/codi_ros/nodes/sim_node.py", 'param(self, "seed")',
                                        'param(self, "sead")', "reads parameter 'sead' but never declares it"),
    "included file missing": (SIM, '"codi_nodes.launch.py"', '"codi_node.launch.py"',
                              "includes codi_node.launch.py, which is not in launch/"),
    "undeclared package": (HW, 'package="tf2_ros"', 'package="tf2_ros_py"',
                           "uses package 'tf2_ros_py', which is not an exec_depend"),
    "controller spawned but not defined": (HW, '["joint_trajectory_controller",', '["position_controller",',
                                           "controller 'position_controller' (spawned) has no type"),
    "controller of the wrong joints": (CONTROLLERS, "right_fr3_joint7]", "right_fr3_joint8]",
                                       "/right/joint_trajectory_controller joints must be"),
    "controller not at 1 kHz": (CONTROLLERS, "update_rate: 1000", "update_rate: 100",
                                "update_rate must be the FR3's 1000 Hz"),
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


def test_both_graphs_are_reachable_only_from_this_machine_unless_asked_and_take_an_enclave():
    """Who may call /codi/plan: discovery on localhost and a domain of its own by default; an SROS2 enclave
    on request (the launch files cannot run here: no launch wheels; this reads what they declare and set).
    codi_nodes.launch.py sets it, and both graphs include it before anything else, so every process gets it."""
    tree = ast.parse((REPO / NODES).read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    declared = {ast.literal_eval(c.args[0]): c for c in calls if c.func.id == "DeclareLaunchArgument"}
    env = {ast.literal_eval(c.args[0]): c for c in calls if c.func.id == "SetEnvironmentVariable"}
    assert {"discovery_range", "domain_id", "enclave"} <= set(declared)
    default = {k.arg: k.value for k in declared["discovery_range"].keywords}["default_value"]
    assert ast.literal_eval(default) == "LOCALHOST"
    assert {"ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_SECURITY_ENCLAVE_OVERRIDE"} <= set(env)
    assert "condition" in {k.arg for k in env["ROS_SECURITY_ENCLAVE_OVERRIDE"].keywords}   # none by default
    for top in (SIM, HW):
        body = next(n for n in ast.walk(ast.parse((REPO / top).read_text()))
                    if isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description").body
        description = next(n.value for n in body if isinstance(n, ast.Return)).args[0]
        entities = [e for e in description.elts if isinstance(e, ast.Call)]
        first_process = next(i for i, e in enumerate(entities) if ast.unparse(e.func) in
                             ("Node", "OpaqueFunction", "IncludeLaunchDescription"))
        assert "codi_nodes.launch.py" in ast.unparse(entities[first_process]), top


def test_the_hardware_launch_declares_what_a_lab_needs():
    tree = ast.parse((REPO / HW).read_text())
    declared = {ast.unparse(c.args[0]) for path in (HW, NODES) for c in ast.walk(ast.parse((REPO / path).read_text()))
                if isinstance(c, ast.Call) and ast.unparse(c.func) == "DeclareLaunchArgument"}
    assert {"'use_fake_hardware'", "'camera_driver'", "'cameras'", "'autonomous'", "'rviz'", "'hw_config'",
            "f\"{a['name']}_robot_ip\""} <= declared, declared
    named = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
             and n.value.endswith((".yaml", ".rviz"))}
    assert named and all((REPO / "config" / name).is_file() for name in named), named   # what it loads exists
