"""The whole simulated two-arm graph: MuJoCo world, per-arm state / perception / action nodes, the cost
service and the CoDi coordinator. Parameters: share/codi_ros/config/ros_sim.yaml; arms: config/world.yaml.

  ros2 launch codi_ros two_arm_sim.launch.py                    # the sim publishes the true cube pose
  ros2 launch codi_ros two_arm_sim.launch.py cameras:=true      # wrist cameras + ArUco instead
  ros2 launch codi_ros two_arm_sim.launch.py autonomous:=true   # start the receding-horizon loop right away
  ros2 launch codi_ros two_arm_sim.launch.py cost_backend:=service   # guidance cost via /codi/evaluate_cost

Who may call it: every node discovers only this machine (ROS_AUTOMATIC_DISCOVERY_RANGE, ``discovery_range``,
default LOCALHOST) on its own domain (ROS_DOMAIN_ID, ``domain_id``: the shell's, else 42), so set the same
ROS_DOMAIN_ID in the terminal that calls /codi/plan. ``enclave:=/codi`` runs every node in that SROS2 enclave
(ROS_SECURITY_ENCLAVE_OVERRIDE; with ROS_SECURITY_ENABLE=true, ROS_SECURITY_STRATEGY=Enforce and
ROS_SECURITY_KEYSTORE set, see README "Who may call the graph").

cameras:=true needs offscreen rendering (MUJOCO_GL=egl or osmesa); the images are rendered in the sim's own
rendering thread at camera_rate_hz (a CPU-only EGL takes ~80 ms per 640x480 image: lower camera_rate_hz without
a GPU), never in the physics loop. At 320x240 the cube's markers are too small to decode from the home pose.
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory("codi_ros"), "config")
    params = os.path.join(config, "ros_sim.yaml")
    with open(os.path.join(config, "world.yaml")) as f:
        arms = [a["name"] for a in yaml.safe_load(f)["arms"]]
    with open(params) as f:
        defaults = yaml.safe_load(f)
    cost_backend = defaults["/coordinator_node"]["ros__parameters"]["cost_backend"]
    camera_rate = defaults["/sim_node"]["ros__parameters"]["camera_rate_hz"]
    cameras = LaunchConfiguration("cameras")
    no_cameras = PythonExpression(["'", cameras, "'.lower() not in ('true', '1')"])
    enclave = LaunchConfiguration("enclave")

    actions = [
        DeclareLaunchArgument("discovery_range", default_value="LOCALHOST",
                              description="ROS_AUTOMATIC_DISCOVERY_RANGE of every node (Jazzy): LOCALHOST (nothing "
                                          "off this machine sees or calls the graph) | SUBNET | SYSTEM_DEFAULT | OFF"),
        DeclareLaunchArgument("domain_id", default_value=EnvironmentVariable("ROS_DOMAIN_ID", default_value="42"),
                              description="ROS_DOMAIN_ID of every node (default: the shell's, else 42); callers of "
                                          "/codi/plan need the same"),
        DeclareLaunchArgument("enclave", default_value="",
                              description="SROS2 enclave of every node, e.g. /codi (ROS_SECURITY_ENCLAVE_OVERRIDE; "
                                          "empty: none)"),
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", LaunchConfiguration("discovery_range")),
        SetEnvironmentVariable("ROS_DOMAIN_ID", LaunchConfiguration("domain_id")),
        SetEnvironmentVariable("ROS_SECURITY_ENCLAVE_OVERRIDE", enclave,
                               condition=IfCondition(PythonExpression(["'", enclave, "' != ''"]))),
        DeclareLaunchArgument("cameras", default_value="false",
                              description="render the wrist cameras and run ArUco (false: the sim publishes "
                                          "the true cube pose)"),
        DeclareLaunchArgument("autonomous", default_value="false",
                              description="start the receding-horizon loop at once (else: ros2 service call "
                                          "/codi/start std_srvs/srv/Trigger)"),
        DeclareLaunchArgument("cost_backend", default_value=cost_backend,
                              description="where the planner's guidance evaluates the cost: in_process | service "
                                          "(/codi/evaluate_cost); default: ros_sim.yaml"),
        DeclareLaunchArgument("camera_rate_hz", default_value=str(camera_rate),
                              description="wrist image rate with cameras:=true, Hz (rendered in a thread of its "
                                          "own: it never slows the physics or the joint states)"),
        Node(package="codi_ros", executable="sim_node", name="sim_node", output="screen",
             parameters=[params, {"publish_images": ParameterValue(cameras, value_type=bool),
                                  "publish_true_cube_pose": ParameterValue(no_cameras, value_type=bool),
                                  "camera_rate_hz": ParameterValue(LaunchConfiguration("camera_rate_hz"),
                                                                   value_type=float)}]),
        Node(package="codi_ros", executable="cost_service_node", name="cost_service_node", output="screen",
             parameters=[params]),
        Node(package="codi_ros", executable="coordinator_node", name="coordinator_node", output="screen",
             parameters=[params, {
                 "autonomous": ParameterValue(LaunchConfiguration("autonomous"), value_type=bool),
                 "cost_backend": ParameterValue(LaunchConfiguration("cost_backend"), value_type=str)}]),
    ]
    for arm in arms:
        actions += [
            Node(package="codi_ros", executable="arm_state_node", name="arm_state_node", namespace=arm,
                 output="screen", parameters=[params, {"arm": arm}]),
            Node(package="codi_ros", executable="action_node", name="action_node", namespace=arm,
                 output="screen", parameters=[params, {"arm": arm}]),
            Node(package="codi_ros", executable="aruco_node", name="aruco_node", namespace=arm,
                 output="screen", parameters=[params, {"arm": arm}], condition=IfCondition(cameras)),
        ]
    return LaunchDescription(actions)
