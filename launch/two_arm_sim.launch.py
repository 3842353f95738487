"""The whole simulated two-arm graph: sim_node (the MuJoCo world behind the interfaces franka_ros2 gives the
real arms: each arm's joint_trajectory_controller topic, franka_gripper actions, joint states, error recovery)
and our nodes (codi_nodes.launch.py, as on the arms: two_arm_hw.launch.py). Parameters:
share/codi_ros/config/ros.yaml; arms: config/world.yaml.

  ros2 launch codi_ros two_arm_sim.launch.py                    # the sim publishes the true cube pose
  ros2 launch codi_ros two_arm_sim.launch.py cameras:=true      # wrist cameras + ArUco instead
  ros2 launch codi_ros two_arm_sim.launch.py autonomous:=true   # start the receding-horizon loop right away
  ros2 launch codi_ros two_arm_sim.launch.py cost_backend:=service   # guidance cost via /codi/evaluate_cost

Who may call it (discovery_range, domain_id, enclave): codi_nodes.launch.py.

cameras:=true needs offscreen rendering (MUJOCO_GL=egl or osmesa); the images are rendered in the sim's own
rendering thread at camera_rate_hz (a CPU-only EGL takes ~80 ms per 640x480 image: lower camera_rate_hz without
a GPU), never in the physics loop. At 320x240 the cube's markers are too small to decode from the home pose.
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("codi_ros")
    params = os.path.join(share, "config", "ros.yaml")
    with open(params) as f:
        camera_rate = yaml.safe_load(f)["/sim_node"]["ros__parameters"]["camera_rate_hz"]
    cameras = LaunchConfiguration("cameras")
    no_cameras = PythonExpression(["'", cameras, "'.lower() not in ('true', '1')"])
    return LaunchDescription([
        # first: it sets the discovery range, domain and enclave for every process after it
        IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(share, "launch", "codi_nodes.launch.py"))),
        DeclareLaunchArgument("camera_rate_hz", default_value=str(camera_rate),
                              description="wrist image rate with cameras:=true, Hz (rendered in a thread of its "
                                          "own: it never slows the physics or the joint states)"),
        Node(package="codi_ros", executable="sim_node", name="sim_node", output="screen",
             parameters=[params, {"publish_images": ParameterValue(cameras, value_type=bool),
                                  "publish_true_cube_pose": ParameterValue(no_cameras, value_type=bool),
                                  "camera_rate_hz": ParameterValue(LaunchConfiguration("camera_rate_hz"),
                                                                   value_type=float)}]),
    ])
