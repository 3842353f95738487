"""The Franka FR3 arm with its Franka (Panda) hand, defined once: joint and finger names, tool offset,
finger travel, and the arm's MJCF, which the simulator's scene and the kinematics of the
controllers (``codi_ros.control.kinematics``) both build on.

Robot data (kinematics, inertias, joint ranges, actuator gains, damping) are the FR3 arm and Panda
hand of google-deepmind/mujoco_menagerie (Apache-2.0); their meshes are not available, so
collision shapes are primitives: capsules on the wrist, a box hand and box finger pads (pads with
friction 1.5, condim 4, priority 1 grasp the cube reliably). Joint names are franka_ros2's
(``fr3_joint1`` .. ``fr3_joint7``, ``fr3_finger_joint1/2``); in a multi-arm model each is prefixed
with the arm's name, as franka_bringup's ``arm_prefix`` does for the arm joints (``left_fr3_joint1``:
:func:`arm_joint_names`); franka_gripper names the fingers without it, in each arm's own namespace.
"""

from __future__ import annotations

import math
from enum import IntEnum

from codi_ros.config import ArmConfig

# (name, body pos, body quat (w x y z), joint range, armature, frictionloss, kp, kv, force limit)
# from menagerie fr3.xml; damping 0.21 on every joint.
_FR3_LINKS = (
    ("link1", "0 0 0.333", "1 0 0 0", (-2.9007, 2.9007), 0.195, 1.137, 4500, 450, 87,
     "4.128e-07 -0.0181251 -0.0386036", "0.998098 -0.0605364 0.00380499 0.0110109", 2.92747,
     "0.0239286 0.0227246 0.00610634"),
    ("link2", "0 0 0", "1 -1 0 0", (-1.8361, 1.8361), 0.195, 1.137, 4500, 450, 87,
     "0.00318289 -0.0743222 0.00881461", "0.502599 0.584437 -0.465998 0.434366", 2.93554,
     "0.0629567 0.0411924 0.0246371"),
    ("link3", "0 -0.316 0", "1 1 0 0", (-2.9007, 2.9007), 0.195, 1.137, 3500, 350, 87,
     "0.0407016 -0.00482006 -0.0289731", "0.921025 -0.244161 0.155272 0.260745", 2.2449,
     "0.0267409 0.0189869 0.0171587"),
    ("link4", "0.0825 0 0", "1 1 0 0", (-3.0770, -0.1169), 0.195, 1.137, 3500, 350, 87,
     "-0.0459101 0.0630493 -0.00851879", "0.438018 0.803311 0.00937812 0.403414", 2.6156,
     "0.05139 0.0372717 0.0160047"),
    ("link5", "-0.0825 0.384 0", "1 -1 0 0", (-2.8763, 2.8763), 0.074, 0.763, 2000, 200, 12,
     "-0.00160396 0.0292536 -0.0972966", "0.919031 0.125604 0.0751531 -0.366003", 2.32712,
     "0.0579335 0.0449144 0.0130634"),
    ("link6", "0 0 0", "1 1 0 0", (0.4398, 4.6216), 0.074, 0.44, 2000, 200, 12,
     "0.0597131 -0.0410295 -0.0101693", "0.621301 0.552665 0.510011 0.220081", 1.81704,
     "0.0175039 0.0161123 0.00193529"),
    ("link7", "0.088 0 0", "1 1 0 0", (-3.0508, 3.0508), 0.074, 0.248, 2000, 200, 12,
     "0.00452258 0.00862619 -0.0161633", "0.727579 0.0978688 -0.24906 0.63168", 0.627143,
     "0.000223836 0.000223642 5.64132e-07"),
)
# Visual-only capsules (fromto in the link frame, radius) along the FR3's links, for rendering.
_LINK_VISUALS = {
    "link1": ("0 0 -0.2 0 0 0", 0.06),
    "link2": ("0 0 0 0 -0.316 0", 0.06),
    "link3": ("0 0 0 0.0825 0 0", 0.055),
    "link4": ("0 0 0 -0.0825 0.384 0", 0.055),
}
# Primitive collision capsules per link (fromto in the link frame), for the links that can meet the
# table or the cube in a top-down task: the forearm, the wrist and the flange.
_LINK_CAPSULES = {
    "link5": ("0 0 -0.22 0 0 -0.05", 0.05),
    "link6": ("0 0 -0.02 0.088 0 -0.02", 0.045),
    "link7": ("0 0 -0.03 0 0 0.09", 0.045),
}
TCP_OFFSET = 0.1034        # Panda hand: flange to the point between the fingertips
FINGER_RANGE = 0.04        # each finger's travel; width = 2 * q_finger
ARM_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("fr3_finger_joint1", "fr3_finger_joint2")
# The FR3's own joint limits (Franka's datasheet; libfranka's rate_limiting.h): beyond them its motion generator
# aborts the motion with a reflex (joint_motion_generator_*_discontinuity / _violation) and the arm stops until
# error recovery. world.yaml's control limits, which the executor commands, stay within them (test_config.py).
JOINT_VELOCITY_LIMIT = (2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26)   # rad/s
JOINT_ACCELERATION_LIMIT = (10.0,) * 7                               # rad/s^2
JOINT_JERK_LIMIT = (5000.0,) * 7                                     # rad/s^3
CONTYPE_WORLD, CONTYPE_ARM = 1, 2   # arm geoms collide with world geoms but not with each other


def arm_joint_names(arm: str) -> tuple[str, ...]:
    """The 7 joints of arm ``arm`` as its driver, the simulator and the trajectory controller name them."""
    return tuple(f"{arm}_{j}" for j in ARM_JOINTS)


TRAJECTORY_CONTROLLER = "joint_trajectory_controller"   # each arm's, in config/franka_controllers.yaml


def hardware_component_name(arm: str) -> str:
    """The arm's ros2_control hardware component under franka_bringup (``arm_prefix:=<arm>``)."""
    return f"{arm}_FrankaHardwareInterface"


class RobotMode(IntEnum):
    """libfranka's robot mode, numbered as franka_msgs/FrankaRobotState's ``robot_mode``."""

    OTHER = 0
    IDLE = 1
    MOVE = 2
    GUIDING = 3
    REFLEX = 4
    USER_STOPPED = 5
    AUTOMATIC_ERROR_RECOVERY = 6


def _yaw_quat(yaw: float) -> str:
    return f"{math.cos(yaw / 2):.9f} 0 0 {math.sin(yaw / 2):.9f}"


def _hand_xml(p: str) -> str:
    """Panda hand on the FR3 flange (-45 deg about z, as on the real robot), fingers and tool site."""
    finger_geoms = (
        f'<geom class="{p}arm_col" type="box" size="0.01 0.006 0.02" pos="0 0.012 0.022"/>'
        f'<geom class="{p}pad" type="box" size="0.0085 0.004 0.012" pos="0 0.0055 0.044"/>'
    )
    return f"""
      <body name="{p}hand" pos="0 0 0.107" quat="0.9238795 0 0 -0.3826834">
        <inertial mass="0.73" pos="-0.01 0 0.03" diaginertia="0.001 0.0025 0.0017"/>
        <geom class="{p}arm_col" type="box" size="0.03 0.1 0.03" pos="0 0 0.035" rgba="0.9 0.9 0.9 1"/>
        <camera name="wrist_{p[:-1]}" pos="0.06 0 0.03" xyaxes="0 -1 0 -1 0 0" fovy="70"/>
        <site name="{p}tcp" pos="0 0 {TCP_OFFSET}" size="0.006" rgba="1 0 0 0.5" group="4"/>
        <body name="{p}left_finger" pos="0 0 0.0584">
          <inertial mass="0.015" pos="0 0 0" diaginertia="2.375e-6 2.375e-6 7.5e-7"/>
          <joint name="{p}{FINGER_JOINTS[0]}" type="slide" axis="0 1 0" range="0 {FINGER_RANGE}"
                 armature="0.1" damping="1"/>
          {finger_geoms}
        </body>
        <body name="{p}right_finger" pos="0 0 0.0584" quat="0 0 0 1">
          <inertial mass="0.015" pos="0 0 0" diaginertia="2.375e-6 2.375e-6 7.5e-7"/>
          <joint name="{p}{FINGER_JOINTS[1]}" type="slide" axis="0 1 0" range="0 {FINGER_RANGE}"
                 armature="0.1" damping="1"/>
          {finger_geoms}
        </body>
      </body>"""


def arm_body_xml(arm: ArmConfig) -> str:
    """The arm's MJCF body tree on its base (pose from ``arm``); names prefixed ``<arm.name>_``."""
    p = f"{arm.name}_"
    body = _hand_xml(p)
    for joint, (name, pos, quat, rng, armature, floss, *_unused, ipos, iquat, mass, dinertia) in reversed(
            tuple(zip(ARM_JOINTS, _FR3_LINKS, strict=True))):
        geom = ""
        if name in _LINK_VISUALS:
            fromto, radius = _LINK_VISUALS[name]
            geom = (f'<geom type="capsule" fromto="{fromto}" size="{radius}" contype="0" conaffinity="0" '
                    f'group="1" rgba="0.95 0.95 0.95 1"/>')
        if name in _LINK_CAPSULES:
            fromto, radius = _LINK_CAPSULES[name]
            geom += f'<geom class="{p}arm_col" type="capsule" fromto="{fromto}" size="{radius}"/>'
        body = f"""
    <body name="{p}{name}" pos="{pos}" quat="{quat}" gravcomp="1">
      <inertial pos="{ipos}" quat="{iquat}" mass="{mass}" diaginertia="{dinertia}"/>
      <joint name="{p}{joint}" axis="0 0 1" range="{rng[0]} {rng[1]}" damping="0.21"
             armature="{armature}" frictionloss="{floss}"/>
      {geom}{body}
    </body>"""
    return f"""
  <body name="{p}base" pos="{arm.base_xy[0]} {arm.base_xy[1]} 0" quat="{_yaw_quat(arm.base_yaw)}">
    <geom type="cylinder" size="0.07 0.1" pos="0 0 0.1" rgba="0.2 0.2 0.2 1" contype="0" conaffinity="0"/>
    <body name="{p}link0" gravcomp="1">{body}
    </body>
  </body>"""


def arm_defaults_xml(arm: ArmConfig) -> str:
    """The arm's geom classes: collision geoms and finger pads."""
    p = f"{arm.name}_"
    return f"""
    <default class="{p}arm_col">
      <geom contype="{CONTYPE_ARM}" conaffinity="{CONTYPE_WORLD}" rgba="0.95 0.95 0.95 1" group="0"/>
    </default>
    <default class="{p}pad">
      <geom contype="{CONTYPE_ARM}" conaffinity="{CONTYPE_WORLD}" friction="1.5" condim="4" priority="1"
            solref="0.01 1" rgba="0.2 0.2 0.2 1"/>
    </default>"""


def arm_actuators_xml(arm: ArmConfig) -> str:
    """Position actuators of the 7 joints (menagerie gains) and of the gripper tendon."""
    p = f"{arm.name}_"
    rows = []
    for joint, (_name, _pos, _quat, rng, _arm, _fl, kp, kv, force, *_rest) in zip(ARM_JOINTS, _FR3_LINKS,
                                                                                  strict=True):
        j = f"{p}{joint}"
        rows.append(f'<position name="{j}" joint="{j}" kp="{kp}" kv="{kv}" ctrlrange="{rng[0]} {rng[1]}" '
                    f'forcerange="-{force} {force}"/>')
    rows.append(f'<position name="{p}gripper" tendon="{p}split" kp="2000" kv="50" ctrlrange="0 {FINGER_RANGE}" '
                f'forcerange="-140 140"/>')
    return "\n    ".join(rows)


def build_arm_xml(arm: ArmConfig) -> str:
    """MJCF of one arm alone (kinematics only: no table, no cube)."""
    return f"""<mujoco model="fr3_{arm.name}">
  <compiler angle="radian" autolimits="true"/>
  <default>{arm_defaults_xml(arm)}
  </default>
  <worldbody>{arm_body_xml(arm)}
  </worldbody>
</mujoco>"""
