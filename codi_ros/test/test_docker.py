"""Static checks of the deployment container (docker/) and the hardware guide (docs/hardware.md): no Docker needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
GUIDE = ROOT / "docs" / "hardware.md"

# two_arm_hw.launch.py's arguments, as the guide must name them (listed here, not read from the launch file)
LAUNCH_ARGUMENTS = ("left_robot_ip", "right_robot_ip", "use_fake_hardware", "cameras", "camera_driver",
                    "autonomous", "rviz", "joint_state_rate")
TORCH = "2.13.0"
MIN_LIBFRANKA = (0, 20, 4)   # franka_ros2 >= 3.4.0 needs libfranka >= 0.20.4 (its compatibility matrix)


def dockerfiles() -> list[Path]:
    return sorted(p for p in DOCKER.glob("Dockerfile*") if not p.name.endswith(".dockerignore"))


def instructions(path: Path) -> list[str]:
    """The file's instructions, continuation lines joined, comments and blank lines dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1]
            continue
        out.append(current + line)
        current = ""
    return out


def arg_defaults(lines: list[str]) -> dict[str, str]:
    found = (re.match(r"ARG\s+(\w+)=(\S+)", line) for line in lines)
    return {m[1]: m[2].strip("\"'") for m in found if m}


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


@pytest.fixture(scope="module")
def compose() -> dict:
    with open(COMPOSE) as f:
        return yaml.safe_load(f)


def command_text(service: dict) -> str:
    command = service["command"]
    return " ".join(command) if isinstance(command, list) else command


def ulimit(value) -> tuple[int, int]:
    """(soft, hard) of a compose ulimit: a single number sets both."""
    return (value["soft"], value["hard"]) if isinstance(value, dict) else (value, value)


def test_hw_service_is_real_time_capable_and_launches_the_arms(compose):
    hw = compose["services"]["hw"]
    assert hw["network_mode"] == "host"
    assert hw["ipc"] == "host"
    assert "SYS_NICE" in hw["cap_add"]
    assert not hw.get("privileged", False)
    assert ulimit(hw["ulimits"]["rtprio"]) == (99, 99)
    assert ulimit(hw["ulimits"]["memlock"]) == (-1, -1)
    env = hw["environment"]
    assert "ROS_DOMAIN_ID" in (env if isinstance(env, dict) else [e.split("=")[0] for e in env])
    command = command_text(hw)
    assert "ros2 launch codi_ros two_arm_hw.launch.py" in command
    assert "left_robot_ip:=${LEFT_ROBOT_IP:-172.16.0.2}" in command
    assert "right_robot_ip:=${RIGHT_ROBOT_IP:-172.16.0.3}" in command
    assert any(str(v).split(":")[0].rstrip("/") == "../config" for v in hw["volumes"]), "hw.yaml must persist"


def test_sim_service_launches_the_simulation(compose):
    assert "ros2 launch codi_ros two_arm_sim.launch.py" in command_text(compose["services"]["sim"])


def test_compose_builds_existing_dockerfiles_and_stages(compose):
    for name, service in compose["services"].items():
        build = service["build"]
        dockerfile = (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile.is_file(), f"{name}: {dockerfile}"
        flavor = build.get("args", {}).get("FLAVOR")
        if flavor is not None:
            stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.MULTILINE | re.IGNORECASE)
            assert f"underlay-{flavor}" in stages, f"{name}: no stage underlay-{flavor} in {stages}"


def test_dockerfiles_pin_torch_and_franka_and_run_rosdep():
    files = dockerfiles()
    assert files
    lines = [line for path in files for line in instructions(path)]
    text = "\n".join(lines)
    args = arg_defaults(lines)
    froms = [line.split() for line in lines if line.upper().startswith("FROM ")]
    stages = {f[3] for f in froms if len(f) == 4 and f[2].upper() == "AS"}
    images = {f[1] for f in froms if f[1] not in stages and "${" not in f[1]}
    assert images == {"ros:jazzy-ros-base"}, images
    assert args.get("TORCH_VERSION") == TORCH and '"torch==${TORCH_VERSION}"' in text
    assert re.fullmatch(r"v3\.\d+\.\d+", args["FRANKA_ROS2_VERSION"]), args["FRANKA_ROS2_VERSION"]
    assert version(args["LIBFRANKA_VERSION"]) >= MIN_LIBFRANKA
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["FRANKA_DESCRIPTION_VERSION"])
    for name in ("FRANKA_ROS2_VERSION", "LIBFRANKA_VERSION", "FRANKA_DESCRIPTION_VERSION"):
        assert f"${{{name}}}" in text, f"{name} is declared but not used"
    assert "rosdep install" in text
    assert (DOCKER / "Dockerfile.dockerignore").is_file()


def test_guide_names_every_launch_argument():
    guide = GUIDE.read_text()
    missing = [a for a in LAUNCH_ARGUMENTS if f"`{a}`" not in guide]
    assert not missing, missing
    for needed in ("PREEMPT_RT", "use_fake_hardware:=true", "/codi/start", "/codi/recover",
                   "codi calibrate hand-eye", "communication_constraints_violation"):
        assert needed in guide, needed
