"""Typed world configuration, loaded from ``config/world.yaml`` (the one source of truth).

Every module that needs a geometric or timing fact (table size, base poses, control rate,
horizon, limits) takes a :class:`WorldConfig` instead of hard-coding it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from codi_ros.frames import BaseFrame
from codi_ros.paths import config_dir


class ConfigError(ValueError):
    """A configuration value is missing, malformed or physically inconsistent."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def from_dict(cls: type, d: Any, where: str, complete: bool = True, **given: Any) -> Any:
    """The config dataclass ``cls`` from a YAML/JSON mapping, strictly: an unknown key, a missing one (with
    ``complete``; else a missing key keeps its default) or a value not of its field's type (ints pass as
    floats, lists as tuples) is a ConfigError naming ``where.field``; nested dataclasses likewise. ``given``:
    fields set by the caller, not read from ``d``. The dataclass's ``__post_init__`` then checks the values."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init} - set(given)
    unknown = sorted(set(d) - names)
    missing = sorted(names - set(d)) if complete else []
    if unknown or missing:
        raise ConfigError(f"{where}: unknown keys {unknown}, missing keys {missing}")
    try:
        return cls(**given, **{k: _value(hints[k], v, f"{where}.{k}") for k, v in d.items()})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _value(hint: Any, v: Any, where: str) -> Any:
    """``v`` as a value of type ``hint`` (see :func:`from_dict`)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, v, where)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, v, where)
    if origin is typing.Literal:
        if v in args:
            return v
        raise ConfigError(f"{where}: must be one of {list(args)}, got {v!r}")
    if origin is dict and isinstance(v, dict):
        return {_value(args[0], k, where): _value(args[1], x, f"{where}.{k}") for k, x in v.items()}
    if origin is tuple and isinstance(v, list | tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], x, f"{where}[{i}]") for i, x in enumerate(v))
        if len(v) == len(args):
            return tuple(_value(a, x, f"{where}[{i}]") for i, (a, x) in enumerate(zip(args, v, strict=True)))
    if hint is float and isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    if hint in (int, str, bool) and type(v) is hint:
        return v
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {v!r}")


@dataclass(frozen=True)
class TableConfig:
    size: tuple[float, float] = (1.8, 1.2)
    thickness: float = 0.05
    friction: float = 1.0

    def __post_init__(self) -> None:
        _check(len(self.size) == 2 and min(self.size) > 0, f"table.size must be two positive lengths, got {self.size}")


@dataclass(frozen=True)
class ArmConfig:
    name: str
    base_xy: tuple[float, float]
    base_yaw: float

    def __post_init__(self) -> None:
        _check(self.name.isidentifier(), f"arm name must be an identifier, got {self.name!r}")
        _check(len(self.base_xy) == 2, f"arms[{self.name}].base_xy must have 2 values")


@dataclass(frozen=True)
class ReachConfig:
    min_radius: float = 0.32
    max_radius: float = 0.76

    def __post_init__(self) -> None:
        _check(0 <= self.min_radius < self.max_radius, "reach: need 0 <= min_radius < max_radius")


@dataclass(frozen=True)
class CubeConfig:
    size: float = 0.05
    mass: float = 0.1
    margin: float = 0.08

    def __post_init__(self) -> None:
        _check(0 < self.size < 0.08, "cube.size must be in (0, 0.08) m to fit the Panda hand")


@dataclass(frozen=True)
class BoxRegion:
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def __post_init__(self) -> None:
        _check(self.x_range[0] <= self.x_range[1] and self.y_range[0] <= self.y_range[1],
               f"region ranges must be (low, high), got {self.x_range}, {self.y_range}")

    def corners(self) -> list[tuple[float, float]]:
        return [(x, y) for x in self.x_range for y in self.y_range]


@dataclass(frozen=True)
class GoalConfig(BoxRegion):
    tolerance: float = 0.15
    settle_seconds: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.tolerance > 0 and self.settle_seconds >= 0,
               "goal: tolerance must be positive, settle_seconds >= 0")


@dataclass(frozen=True)
class ControlConfig:
    rate_hz: float = 10.0
    ik_rate_hz: float = 100.0
    physics_dt: float = 0.002
    max_linear_speed: float = 0.3
    max_angular_speed: float = 1.5
    gripper_max_width: float = 0.08
    ik_damping: float = 0.05
    nullspace_gain: float = 0.5
    joint_velocity_limit: tuple[float, ...] = (2.0, 1.0, 1.5, 1.25, 3.0, 1.5, 3.0)
    joint_acceleration_limit: tuple[float, ...] = (9.0,) * 7
    joint_jerk_limit: tuple[float, ...] = (4500.0,) * 7
    servo_rate_hz: float = 1000.0   # the arm controller's rate (FR3: 1 kHz): jerk is bounded as it sees it
    tracking_time_constant: float = 0.1   # s: the joints follow velocity commands with this first-order lag

    def __post_init__(self) -> None:
        _check(self.rate_hz > 0 and self.ik_rate_hz >= self.rate_hz, "control: need 0 < rate_hz <= ik_rate_hz")
        _check(0 < self.physics_dt <= 0.005, "control.physics_dt must be in (0, 5 ms]: at 10 ms cubes fall through")
        _check(abs(round(self.substeps_per_ik) - self.substeps_per_ik) < 1e-6,
               "1/ik_rate_hz must be a multiple of physics_dt")
        _check(abs(round(self.ik_per_control) - self.ik_per_control) < 1e-6, "ik_rate_hz must be a multiple of rate_hz")
        _check(len(self.joint_velocity_limit) == 7 and len(self.joint_acceleration_limit) == 7
               and len(self.joint_jerk_limit) == 7, "joint limits need 7 values")
        _check(self.servo_rate_hz >= self.ik_rate_hz, "control: need servo_rate_hz >= ik_rate_hz")
        _check(0 <= self.tracking_time_constant < 10, "control.tracking_time_constant must be in [0, 10) s")

    @property
    def dt(self) -> float:
        """Control period (one action of a chunk), seconds."""
        return 1.0 / self.rate_hz

    @property
    def substeps_per_ik(self) -> float:
        return 1.0 / (self.ik_rate_hz * self.physics_dt)

    @property
    def ik_per_control(self) -> float:
        return self.ik_rate_hz / self.rate_hz


@dataclass(frozen=True)
class WorkspaceConfig:
    lower: tuple[float, float, float] = (-0.9, -0.6, 0.02)
    upper: tuple[float, float, float] = (0.9, 0.6, 0.8)
    lookahead: float = 0.2

    def __post_init__(self) -> None:
        _check(len(self.lower) == 3 and len(self.upper) == 3 and all(a < b for a, b in zip(self.lower, self.upper,
                                                                                            strict=True)),
               f"workspace: need lower < upper (3 values each), got {self.lower}, {self.upper}")
        _check(self.lookahead > 0, "workspace.lookahead must be positive")


@dataclass(frozen=True)
class ExecutorConfig:
    """How chunks become joint commands (codi_ros.control.executor), the same in every path."""

    blend_time: float = 0.0       # s: cross-fade from the last twist into a new chunk (0: zero-order hold)
    stop_time: float = 0.1        # s: a hold ramps every joint to zero within this
    late_tolerance: float = 0.02  # s: a latency-aware chunk arriving later than its takeover + this is dropped
    delivery_margin: float = 0.2   # s: from a chunk to its arm's first new command (the action node's trajectory)

    def __post_init__(self) -> None:
        _check(self.blend_time >= 0 and self.late_tolerance >= 0, "executor: blend_time, late_tolerance must be >= 0")
        _check(self.delivery_margin > 0, "executor.delivery_margin must be positive")
        _check(self.stop_time > 0, "executor.stop_time must be positive")


@dataclass(frozen=True)
class GripperConfig:
    """The Franka hand's blocking actions (franka_gripper Move and Grasp) as the sim graph and the arms use them
    (codi_ros.control.gripper): a streamed width becomes a grasp or an open, with hysteresis."""

    close_below: float = 0.03     # m: a commanded width below this grasps the cube
    open_above: float = 0.05      # m: above this opens to it (at most control.gripper_max_width); between: no change
    move_step: float = 0.005      # m: an open wish this much wider or narrower than the last sends a new move
    speed: float = 0.1            # m/s: finger speed of a move or grasp
    force: float = 20.0           # N: grasp force
    epsilon: float = 0.01         # m: a grasp succeeds with the fingers at cube.size +- this
    timeout: float = 3.0          # s: a move or grasp not finished by then has failed

    def __post_init__(self) -> None:
        _check(0 < self.close_below < self.open_above, "gripper: need 0 < close_below < open_above")
        _check(self.move_step > 0, "gripper: move_step must be positive")
        _check(self.speed > 0 and self.force > 0 and self.epsilon > 0 and self.timeout > 0,
               "gripper: speed, force, epsilon and timeout must be positive")

    def wish(self, width: float) -> Literal["grasp", "open"] | None:
        """What a commanded width asks of the hand: a grasp below ``close_below``, an open (to that width)
        above ``open_above``, nothing new in between (the last wish stands)."""
        if width < self.close_below:
            return "grasp"
        return "open" if width > self.open_above else None


@dataclass(frozen=True)
class HorizonConfig:
    prediction: int = 16
    execution: int = 4

    def __post_init__(self) -> None:
        _check(1 <= self.execution <= self.prediction, "horizon: need 1 <= execution <= prediction")


@dataclass(frozen=True)
class EpisodeConfig:
    max_seconds: float = 30.0     # an episode (codi eval, codi demo, the graph experiment, a demonstration) ends here

    def __post_init__(self) -> None:
        _check(self.max_seconds > 0, "episode.max_seconds must be positive")


@dataclass(frozen=True)
class WorldConfig:
    table: TableConfig
    arms: tuple[ArmConfig, ...]
    home_qpos: tuple[float, ...]
    reach: ReachConfig
    cube: CubeConfig
    goal: GoalConfig
    handover_strip: BoxRegion
    control: ControlConfig
    horizon: HorizonConfig
    workspace: WorkspaceConfig = field(default_factory=WorkspaceConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    gripper: GripperConfig = field(default_factory=GripperConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    source: str = field(default="<defaults>", compare=False)

    def __post_init__(self) -> None:
        _check(len(self.arms) >= 1, "at least one arm is required")
        _check(len({a.name for a in self.arms}) == len(self.arms), "arm names must be unique")
        _check(len(self.home_qpos) == 7, "home_qpos needs 7 joint values")
        _check(self.gripper.open_above < self.control.gripper_max_width,
               "gripper.open_above must be below control.gripper_max_width")
        hx, hy = self.table.size[0] / 2, self.table.size[1] / 2
        for name, region in (("goal", self.goal), ("handover_strip", self.handover_strip)):
            for x, y in region.corners():
                _check(abs(x) <= hx and abs(y) <= hy, f"{name} region corner ({x:.2f}, {y:.2f}) is off the table")
        # Every goal must be reachable by at least one arm, else the task cannot be completed.
        for x, y in self.goal.corners():
            _check(any(self.reachable(a, (x, y)) for a in self.arms),
                   f"goal region corner ({x:.2f}, {y:.2f}) is out of reach of every arm "
                   f"(reach {self.reach.min_radius}-{self.reach.max_radius} m from a base)")

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms)

    def arm(self, name: str) -> ArmConfig:
        for a in self.arms:
            if a.name == name:
                return a
        raise ConfigError(f"unknown arm {name!r}; configured arms: {self.arm_names}")

    def base_frame(self, name: str) -> BaseFrame:
        a = self.arm(name)
        return BaseFrame(xy=a.base_xy, yaw=a.base_yaw)

    def goal_centre(self) -> tuple[float, float, float]:
        """The centre of the goal region, at cube-centre height: the goal until a task names one."""
        return ((self.goal.x_range[0] + self.goal.x_range[1]) / 2, (self.goal.y_range[0] + self.goal.y_range[1]) / 2,
                self.cube.size / 2)

    def reachable(self, arm: ArmConfig | str, xy: tuple[float, float]) -> bool:
        """Whether a table-height point is inside the arm's top-down grasp annulus."""
        a = self.arm(arm) if isinstance(arm, str) else arm
        r = math.hypot(xy[0] - a.base_xy[0], xy[1] - a.base_xy[1])
        return self.reach.min_radius <= r <= self.reach.max_radius

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


def world_config_from_dict(d: dict[str, Any], source: str = "<dict>") -> WorldConfig:
    """A validated :class:`WorldConfig` from the YAML structure of ``config/world.yaml``: every key given,
    none unknown (:func:`from_dict`)."""
    return from_dict(WorldConfig, d, source, source=source)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file, or a ConfigError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def load_world_config(path: str | Path | None = None) -> WorldConfig:
    """Load the world config (default: the installed/shipped ``config/world.yaml``)."""
    p = Path(path) if path is not None else config_dir() / "world.yaml"
    return world_config_from_dict(read_yaml_mapping(p), source=str(p))


@dataclass(frozen=True)
class RobotConnection:
    """One real arm of ``config/hw.yaml``: its FR3, its wrist camera and the camera's hand-eye calibration."""

    robot_ip: str
    hand_eye_translation: tuple[float, float, float]        # m: the camera's optical frame in the tool frame
    hand_eye_quaternion_xyzw: tuple[float, float, float, float]
    image_topic: str
    camera_info_topic: str
    camera_serial: str = ""

    def __post_init__(self) -> None:
        _check(bool(self.robot_ip), "robot_ip must not be empty")
        values = (*self.hand_eye_translation, *self.hand_eye_quaternion_xyzw)
        _check(all(math.isfinite(v) for v in values), f"hand_eye: NaN or inf in {values}")
        norm = math.sqrt(sum(v * v for v in self.hand_eye_quaternion_xyzw))
        _check(abs(norm - 1.0) < 1e-3, f"hand_eye_quaternion_xyzw: not a unit quaternion (norm {norm:.4f})")
        _check(self.image_topic.startswith("/") and self.camera_info_topic.startswith("/"),
               "image_topic / camera_info_topic: absolute topic names (/...)")


@dataclass(frozen=True)
class HardwareConfig:
    arms: dict[str, RobotConnection]


def load_hardware_config(path: str | Path | None = None, world: WorldConfig | None = None) -> HardwareConfig:
    """``config/hw.yaml`` (default: the installed one), strictly, with one entry per arm of ``world``
    (default: the installed world.yaml)."""
    p = Path(path) if path is not None else config_dir() / "hw.yaml"
    world = world if world is not None else load_world_config()
    hw = from_dict(HardwareConfig, read_yaml_mapping(p), str(p))
    _check(set(hw.arms) == set(world.arm_names),
           f"{p}: arms {sorted(hw.arms)} must be world.yaml's arms {sorted(world.arm_names)}")
    return hw
