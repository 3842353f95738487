"""Our nodes, the same in simulation and on the arms: per arm (namespaced) arm_state_node, action_node and,
with cameras:=true, aruco_node; the cost service and the CoDi coordinator. Included by two_arm_sim.launch.py
(beside sim_node) and two_arm_hw.launch.py (beside franka_ros2), which differ only in the driver they start.
Parameters: share/codi_ros/config/ros.yaml; arms: config/world.yaml.

It also sets who may call the graph, for every process launched after it (the including files include it
first): each discovers only this machine (ROS_AUTOMATIC_DISCOVERY_RANGE, ``discovery_range``, default
LOCALHOST) on its own domain (ROS_DOMAIN_ID, ``domain_id``: the shell's, else 42), so set the same
ROS_DOMAIN_ID in the terminal that calls /codi/plan. ``enclave:=/codi`` runs every node in that SROS2 enclave
(ROS_SECURITY_ENCLAVE_OVERRIDE; with ROS_SECURITY_ENABLE=true, ROS_SECURITY_STRATEGY=Enforce and
ROS_SECURITY_KEYSTORE set, see README "Who may call the graph").

``hw_config:=<hw.yaml>`` (the hardware launch): each aruco node takes its arm's hand-eye calibration and wrist
camera topics from that file; empty (simulation): ros.yaml's hand-eye (the simulated wrist camera) and the
sim's ``<arm>/wrist_camera/*`` topics.
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def arm_nodes(context, params, arms):
    """Per arm: its state, action and (cameras:=true) ArUco nodes, the latter calibrated from hw_config."""
    hw_config = LaunchConfiguration("hw_config").perform(context)
    hw = yaml.safe_load(open(hw_config).read())["arms"] if hw_config else {}
    nodes = []
    for arm in arms:
        camera = {}
        remappings = []
        if arm in hw:
            camera = {"hand_eye_translation": hw[arm]["hand_eye_translation"],
                      "hand_eye_quaternion_xyzw": hw[arm]["hand_eye_quaternion_xyzw"]}
            remappings = [("wrist_camera/image_raw", hw[arm]["image_topic"]),
                          ("wrist_camera/camera_info", hw[arm]["camera_info_topic"])]
        nodes += [
            Node(package="codi_ros", executable="arm_state_node", name="arm_state_node", namespace=arm,
                 output="screen", parameters=[params, {"arm": arm}]),
            Node(package="codi_ros", executable="action_node", name="action_node", namespace=arm,
                 output="screen", parameters=[params, {"arm": arm}]),
            Node(package="codi_ros", executable="aruco_node", name="aruco_node", namespace=arm,
                 output="screen", parameters=[params, {"arm": arm}, camera], remappings=remappings,
                 condition=IfCondition(LaunchConfiguration("cameras"))),
        ]
    return nodes


def generate_launch_description():
    config = os.path.join(get_package_share_directory("codi_ros"), "config")
    params = os.path.join(config, "ros.yaml")
    with open(os.path.join(config, "world.yaml")) as f:
        arms = [a["name"] for a in yaml.safe_load(f)["arms"]]
    with open(params) as f:
        cost_backend = yaml.safe_load(f)["/coordinator_node"]["ros__parameters"]["cost_backend"]
    enclave = LaunchConfiguration("enclave")
    return LaunchDescription([
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
                              description="run ArUco on the wrist cameras (false: the cube pose comes from "
                                          "elsewhere, e.g. the sim's true pose)"),
        DeclareLaunchArgument("autonomous", default_value="false",
                              description="start the receding-horizon loop at once (else: ros2 service call "
                                          "/codi/start std_srvs/srv/Trigger)"),
        DeclareLaunchArgument("cost_backend", default_value=cost_backend,
                              description="where the planner's guidance evaluates the cost: in_process | service "
                                          "(/codi/evaluate_cost); default: ros.yaml"),
        DeclareLaunchArgument("hw_config", default_value="",
                              description="hw.yaml of the real arms (the aruco nodes' hand-eye calibration and "
                                          "camera topics); empty: the simulated wrist cameras"),
        Node(package="codi_ros", executable="cost_service_node", name="cost_service_node", output="screen",
             parameters=[params]),
        Node(package="codi_ros", executable="coordinator_node", name="coordinator_node", output="screen",
             parameters=[params, {
                 "autonomous": ParameterValue(LaunchConfiguration("autonomous"), value_type=bool),
                 "cost_backend": ParameterValue(LaunchConfiguration("cost_backend"), value_type=str)}]),
        OpaqueFunction(function=arm_nodes, args=[params, arms]),
    ])
