"""Two real FR3s: franka_ros2 once per arm (franka_bringup's franka.launch.py in namespace and arm_prefix
``<arm>``, with its gripper), a ros2_control JointTrajectoryController per arm (config/franka_controllers.yaml:
1 kHz, position commands, spline interpolation), static TF of the bases and wrist cameras, and our nodes
(codi_nodes.launch.py, exactly as in two_arm_sim.launch.py, which starts sim_node where this starts franka_ros2).

  ros2 launch codi_ros two_arm_hw.launch.py use_fake_hardware:=true     # first: every node starts, nothing moves
  ros2 launch codi_ros two_arm_hw.launch.py left_robot_ip:=172.16.0.2 right_robot_ip:=172.16.0.3
  ros2 launch codi_ros two_arm_hw.launch.py camera_driver:=realsense rviz:=true
  ros2 launch codi_ros two_arm_hw.launch.py --show-args

Robot addresses, wrist-camera topics and hand-eye calibrations: config/hw.yaml (``hw_config``); base poses:
world.yaml's (the planner's geometry: place the robots there). Motion starts only on /codi/start (or
autonomous:=true); /codi/stop brings both arms to rest; after a reflex, /codi/recover runs franka's error
recovery on both arms (README "Running on two FR3s").
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node


def robot_nodes(context, share, world):
    """Per arm: franka_ros2 (arm, gripper, state), its trajectory controller, static TF and camera driver."""
    hw = yaml.safe_load(open(LaunchConfiguration("hw_config").perform(context)).read())["arms"]
    controllers = os.path.join(share, "config", "franka_controllers.yaml")
    franka = os.path.join(get_package_share_directory("franka_bringup"), "launch", "franka.launch.py")
    fake = LaunchConfiguration("use_fake_hardware")
    realsense = IfCondition(PythonExpression(["'", LaunchConfiguration("camera_driver"), "' == 'realsense'"]))
    actions = []
    for arm in world["arms"]:
        name, (x, y), yaw = arm["name"], arm["base_xy"], arm["base_yaw"]
        robot_ip = LaunchConfiguration(f"{name}_robot_ip").perform(context) or hw[name]["robot_ip"]
        t, q = hw[name]["hand_eye_translation"], hw[name]["hand_eye_quaternion_xyzw"]
        actions.append(GroupAction(scoped=True, actions=[
            IncludeLaunchDescription(PythonLaunchDescriptionSource(franka), launch_arguments={
                "robot_type": "fr3", "arm_prefix": name, "namespace": name, "robot_ip": robot_ip,
                "load_gripper": "true", "use_fake_hardware": fake, "fake_sensor_commands": fake,
                "joint_state_rate": LaunchConfiguration("joint_state_rate"),
                "controllers_yaml": controllers}.items()),
            Node(package="controller_manager", executable="spawner", namespace=name, output="screen",
                 arguments=["joint_trajectory_controller", "--controller-manager", f"/{name}/controller_manager",
                            "--param-file", controllers]),
            Node(package="tf2_ros", executable="static_transform_publisher", name=f"{name}_base_tf",
                 arguments=["--x", str(x), "--y", str(y), "--yaw", str(yaw), "--frame-id", "world",
                            "--child-frame-id", f"{name}_fr3_link0"]),
            Node(package="tf2_ros", executable="static_transform_publisher", name=f"{name}_hand_eye_tf",
                 arguments=["--x", str(t[0]), "--y", str(t[1]), "--z", str(t[2]), "--qx", str(q[0]),
                            "--qy", str(q[1]), "--qz", str(q[2]), "--qw", str(q[3]),
                            "--frame-id", f"{name}_fr3_hand_tcp", "--child-frame-id", f"{name}_camera_optical"]),
            Node(package="realsense2_camera", executable="realsense2_camera_node", name="camera", namespace=name,
                 output="screen", parameters=[{"serial_no": hw[name]["camera_serial"]}], condition=realsense),
        ]))
    return actions


def generate_launch_description():
    share = get_package_share_directory("codi_ros")
    with open(os.path.join(share, "config", "world.yaml")) as f:
        world = yaml.safe_load(f)
    hw_config = LaunchConfiguration("hw_config")
    return LaunchDescription([
        DeclareLaunchArgument("hw_config", default_value=os.path.join(share, "config", "hw.yaml"),
                              description="robot addresses, wrist-camera topics, hand-eye calibrations "
                                          "(codi calibrate hand-eye writes it)"),
        *(DeclareLaunchArgument(f"{a['name']}_robot_ip", default_value="",
                                description=f"address of the {a['name']} FR3 (empty: hw_config's)")
          for a in world["arms"]),
        DeclareLaunchArgument("use_fake_hardware", default_value="false",
                              description="franka_ros2's mock components: every node starts, no joint moves, "
                                          "no gripper actions, no robot-state broadcaster"),
        DeclareLaunchArgument("camera_driver", default_value="none",
                              description="none (run your own driver on hw_config's topics) | realsense "
                                          "(realsense2_camera per arm, serial numbers from hw_config)"),
        DeclareLaunchArgument("joint_state_rate", default_value="100",
                              description="franka_ros2's merged joint_states rate, Hz (our arm states: ros.yaml)"),
        DeclareLaunchArgument("cameras", default_value="true",
                              description="run ArUco on the wrist cameras (hw_config's topics)"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="RViz with the arms, the planned tool paths, the fused cube and the goal"),
        # first: it sets the discovery range, domain and enclave for every process after it; it declares
        # autonomous, cost_backend and the rest of our nodes' arguments
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, "launch", "codi_nodes.launch.py")),
            launch_arguments={"hw_config": hw_config, "cameras": LaunchConfiguration("cameras")}.items()),
        OpaqueFunction(function=robot_nodes, args=[share, world]),
        Node(package="rviz2", executable="rviz2", output="screen", condition=IfCondition(LaunchConfiguration("rviz")),
             arguments=["-d", os.path.join(share, "config", "codi.rviz")]),
    ])
