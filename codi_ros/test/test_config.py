"""The shipped YAML files are the configuration: the dataclasses' defaults equal them (so ``Planner(policy,
world)`` is the shipped planner), and every loader is strict (an unknown, missing or mistyped key is refused
with the field's name)."""

import pytest
import yaml
from fakes import edited_config, shipped_config

from codi_ros.config import ConfigError, load_hardware_config, load_world_config
from codi_ros.core.cost import CostConfig, load_cost_config
from codi_ros.core.planner import PlannerConfig, load_planner_config
from codi_ros.robot.fr3 import JOINT_ACCELERATION_LIMIT, JOINT_JERK_LIMIT, JOINT_VELOCITY_LIMIT

LOADERS = {"world.yaml": load_world_config, "planner.yaml": load_planner_config, "cost.yaml": load_cost_config}


def write(tmp_path, name: str, data: dict):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_planner_and_cost_defaults_are_the_shipped_files():
    assert load_planner_config() == PlannerConfig()
    assert load_cost_config() == CostConfig()


@pytest.mark.parametrize("section", ["table", "reach", "cube", "control", "workspace", "executor", "gripper",
                                     "horizon", "episode"])
def test_world_section_defaults_are_the_shipped_file(section):
    value = getattr(load_world_config(), section)
    assert value == type(value)()


@pytest.mark.parametrize("name", LOADERS)
def test_an_unknown_key_is_refused_by_name(tmp_path, name):
    data = shipped_config(name)
    section = next(k for k, v in data.items() if isinstance(v, dict))
    data[section]["typo_key"] = 1
    with pytest.raises(ConfigError, match=f"{section}: unknown keys \\['typo_key'\\]"):
        LOADERS[name](write(tmp_path, name, data))


@pytest.mark.parametrize("name", LOADERS)
def test_a_missing_key_is_refused_by_name(tmp_path, name):
    data = shipped_config(name)
    section = next(k for k, v in data.items() if isinstance(v, dict))
    dropped = next(iter(data[section]))
    del data[section][dropped]
    with pytest.raises(ConfigError, match=f"missing keys \\['{dropped}'\\]"):
        LOADERS[name](write(tmp_path, name, data))


@pytest.mark.parametrize("name, key, value, message", [
    ("world.yaml", "control.rate_hz", "fast", r"control\.rate_hz: expected float"),
    ("world.yaml", "horizon.execution", 2.5, r"horizon\.execution: expected int"),
    ("world.yaml", "arms", [{"name": "left", "base_xy": [0.0], "base_yaw": 0.0}], r"arms\[0\]\.base_xy: expected"),
    ("planner.yaml", "sampler", "euler", r"planner\.sampler: must be one of \['sde', 'heun', 'dpmpp2m'\]"),
    ("planner.yaml", "realtime.commit", "yes", r"realtime\.commit: expected bool"),
    ("cost.yaml", "goal.weight", [1.0], r"goal\.weight: expected float"),
])
def test_a_mistyped_value_is_refused_by_name(tmp_path, name, key, value, message):
    with pytest.raises(ConfigError, match=message):
        LOADERS[name](edited_config(tmp_path, name, key, value))


def test_the_shipped_hw_config_has_every_arm_of_the_world():
    hw = load_hardware_config()
    assert set(hw.arms) == set(load_world_config().arm_names)
    assert all(a.robot_ip and a.image_topic.startswith(f"/{name}/") for name, a in hw.arms.items())


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["arms"]["left"].update(robot_ipp=d["arms"]["left"].pop("robot_ip")),
     r"arms\.left: unknown keys \['robot_ipp'\], missing keys \['robot_ip'\]"),
    (lambda d: d["arms"].pop("right"), r"arms \['left'\] must be world.yaml's arms \['left', 'right'\]"),
    (lambda d: d["arms"]["left"].update(hand_eye_quaternion_xyzw=[0.0, 0.0, 0.0, 2.0]), "not a unit quaternion"),
    (lambda d: d["arms"]["right"].update(image_topic="camera/image_raw"), "absolute topic names"),
])
def test_a_bad_hw_config_is_refused_by_name(tmp_path, edit, message):
    data = shipped_config("hw.yaml")
    edit(data)
    with pytest.raises(ConfigError, match=message):
        load_hardware_config(write(tmp_path, "hw.yaml", data))


def test_the_executor_commands_stay_below_the_fr3s_own_limits():
    """The FR3 aborts with a reflex at its limits: what the executor commands keeps a margin below them."""
    c = load_world_config().control
    for ours, fr3 in ((c.joint_velocity_limit, JOINT_VELOCITY_LIMIT), (c.joint_acceleration_limit,
                                                                       JOINT_ACCELERATION_LIMIT),
                      (c.joint_jerk_limit, JOINT_JERK_LIMIT)):
        assert all(a <= 0.9 * b + 1e-9 for a, b in zip(ours, fr3, strict=True)), (ours, fr3)
