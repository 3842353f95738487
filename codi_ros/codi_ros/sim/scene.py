"""The two-arm handover world as MJCF, built in code from the world config: the table, the cube,
the goal marker, cameras and the arms of :mod:`codi_ros.robot.fr3`.

Arm-arm contacts are not simulated (the collision metric is end-effector separation, as in the
paper's cost); arm-table and arm-cube contacts are.
"""

from __future__ import annotations

from codi_ros.config import WorldConfig
from codi_ros.robot.fr3 import CONTYPE_WORLD, FINGER_JOINTS, arm_actuators_xml, arm_body_xml, arm_defaults_xml

CUBE_FACES = ("right", "left", "up", "down", "front", "back")   # MuJoCo cube-texture faces


def build_scene_xml(cfg: WorldConfig, cube_texture: bool = False) -> str:
    """MJCF of the table, the arms of ``cfg`` with Panda hands, the cube, the goal marker and cameras.

    With ``cube_texture`` the cube wears a cube texture read from the assets ``cube_<face>.png``
    (e.g. ArUco markers from :func:`codi_ros.perception.aruco.mujoco_face_images`)."""
    hx, hy = cfg.table.size[0] / 2, cfg.table.size[1] / 2
    half_cube = cfg.cube.size / 2
    arms = "".join(arm_body_xml(a) for a in cfg.arms)
    defaults = "".join(arm_defaults_xml(a) for a in cfg.arms)
    tendons = "".join(
        f'<fixed name="{a.name}_split"><joint joint="{a.name}_{FINGER_JOINTS[0]}" coef="0.5"/>'
        f'<joint joint="{a.name}_{FINGER_JOINTS[1]}" coef="0.5"/></fixed>' for a in cfg.arms)
    equality = "".join(
        f'<joint joint1="{a.name}_{FINGER_JOINTS[0]}" joint2="{a.name}_{FINGER_JOINTS[1]}" solimp="0.95 0.99 0.001" '
        f'solref="0.005 1"/>' for a in cfg.arms)
    cube_assets, cube_look = "", 'rgba="0.85 0.2 0.2 1"'
    if cube_texture:
        files = " ".join(f'file{f}="cube_{f}.png"' for f in CUBE_FACES)
        cube_assets = f'\n    <texture name="cube_markers" type="cube" {files}/>' \
                      '\n    <material name="cube_markers" texture="cube_markers"/>'
        cube_look = 'material="cube_markers"'
    excludes = "".join(
        f'<exclude body1="{a.name}_hand" body2="{a.name}_left_finger"/>'
        f'<exclude body1="{a.name}_hand" body2="{a.name}_right_finger"/>' for a in cfg.arms)
    return f"""<mujoco model="codi_two_arm_handover">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{cfg.control.physics_dt}" integrator="implicitfast" cone="elliptic" solver="Newton"
          iterations="50"/>
  <visual><global offwidth="640" offheight="480"/></visual>
  <default>{defaults}
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.55 0.45 0.35" rgb2="0.5 0.4 0.3" width="256" height="256"/>
    <material name="table" texture="grid" texrepeat="6 4"/>{cube_assets}
  </asset>
  <worldbody>
    <light pos="0 0 2.5" dir="0 0 -1" diffuse="0.8 0.8 0.8"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" rgba="0.3 0.3 0.3 1" contype="0" conaffinity="0"/>
    <geom name="table" type="box" size="{hx} {hy} {cfg.table.thickness / 2}" pos="0 0 {-cfg.table.thickness / 2}"
          material="table" friction="{cfg.table.friction}" contype="{CONTYPE_WORLD}" conaffinity="{CONTYPE_WORLD}"/>
    <camera name="overview" pos="0 -1.9 1.5" xyaxes="1 0 0 0 0.6 0.8" fovy="55"/>
    <site name="goal" type="sphere" size="0.03" pos="0.3 0 0.03" rgba="0.1 0.8 0.1 0.5"/>
    <body name="cube" pos="0 0 {half_cube}">
      <freejoint name="cube_free"/>
      <geom name="cube" type="box" size="{half_cube} {half_cube} {half_cube}" mass="{cfg.cube.mass}" friction="1.0"
            condim="4" {cube_look} contype="{CONTYPE_WORLD}" conaffinity="{CONTYPE_WORLD}"/>
    </body>{arms}
  </worldbody>
  <tendon>{tendons}</tendon>
  <equality>{equality}</equality>
  <contact>{excludes}</contact>
  <actuator>
    {"".join(arm_actuators_xml(a) for a in cfg.arms)}
  </actuator>
</mujoco>"""
