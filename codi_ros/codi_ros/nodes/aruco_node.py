"""aruco_node (one per arm, namespaced): wrist-camera images -> codi_msgs/CubeDetection in the world frame.

Subscribes ``wrist_camera/image_raw``, ``wrist_camera/camera_info`` and ``arm_state`` (the tool pose
at each image's time); publishes on the shared ``/codi/cube_detections``, which the coordinator fuses.
"""

from __future__ import annotations

from codi_msgs.msg import ArmState, CubeDetection
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from codi_ros.nodes._ros import SENSOR_QOS, describe, log_lines, param, run, stamp_sec, world_config
from codi_ros.perception.aruco import CubeMarkerLayout, CubePoseEstimator
from codi_ros.ros.msg_dict import fill, to_dict
from codi_ros.ros.wrist_camera import WristCamera, hand_eye


class ArucoNode(Node):
    def __init__(self) -> None:
        super().__init__("aruco_node")
        self.declare_parameter("arm", "left", describe("arm whose wrist camera this is"))
        self.declare_parameter("marker_size", 0.04, describe("side of each marker's black square, m"))
        self.declare_parameter("dictionary", "DICT_4X4_50", describe("OpenCV ArUco dictionary of the markers"))
        self.declare_parameter("face_ids", [0, 1, 2, 3, 4, 5], describe("marker ids on the faces +x -x +y -y +z -z"))
        self.declare_parameter("hand_eye_translation", [0.0, 0.0, 0.0],
                               describe("camera optical frame origin in the tool frame, m"))
        self.declare_parameter("hand_eye_quaternion_xyzw", [0.0, 0.0, 0.0, 1.0],
                               describe("camera optical frame orientation in the tool frame"))
        self.declare_parameter("max_reprojection_error", 2.0, describe("reject fits worse than this RMS, px"))
        self.declare_parameter("pose_tolerance", 0.05, describe("max gap between image and tool pose stamps, s"))
        layout = CubeMarkerLayout(cube_size=world_config(self).cube.size, marker_size=param(self, "marker_size"),
                                  dictionary=param(self, "dictionary"), face_ids=tuple(param(self, "face_ids")))
        estimator = CubePoseEstimator(layout, param(self, "max_reprojection_error"))
        T_tcp_cam = hand_eye(param(self, "hand_eye_translation"), param(self, "hand_eye_quaternion_xyzw"))
        self.camera = WristCamera(param(self, "arm"), estimator, T_tcp_cam, param(self, "pose_tolerance"))
        self.pub = self.create_publisher(CubeDetection, "/codi/cube_detections", SENSOR_QOS)
        self.create_subscription(ArmState, "arm_state", lambda m: self.camera.on_arm_state(to_dict(m)), SENSOR_QOS)
        self.create_subscription(CameraInfo, "wrist_camera/camera_info",
                                 lambda m: self.camera.on_camera_info(to_dict(m)), SENSOR_QOS)
        self.create_subscription(Image, "wrist_camera/image_raw", self.on_image, SENSOR_QOS)

    def on_image(self, msg: Image) -> None:
        stamp = stamp_sec(msg.header.stamp)
        detection = self.camera.on_image(msg.data, msg.height, msg.width, msg.step, msg.encoding, stamp)
        if detection is not None:
            self.pub.publish(fill(CubeDetection(), detection))
        log_lines(self, self.camera.pop_log())


def main(args: list[str] | None = None) -> None:
    run(ArucoNode, args=args)


if __name__ == "__main__":
    main()
