#!/usr/bin/env bash
# ROS 2 packaging checks without a ROS install, using Debian's colcon and rosidl parser (packaged for
# Debian's /usr/bin/python3 only):
#   1. `colcon build --packages-select codi_ros` gives the layout `ros2 run` / `ros2 launch` use, and
#      codi_ros.paths finds the installed share/codi_ros through AMENT_PREFIX_PATH;
#   2. codi_msgs' msg/srv files translate to .idl and parse (scripts/check_interfaces.sh);
#   3. launch files compile and name only installed executables and declared parameters
#      (scripts/check_ros_static.py).
# codi_msgs is not built here (Debian has no rosidl_default_generators): scripts/ros_venv.sh builds it for
# the node tests under a real rclpy (make test-ros); docker/Dockerfile builds the whole workspace.
# Missing tools are installed with apt-get when CI=true; otherwise the checks are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

SYS_PY=/usr/bin/python3
APT_PACKAGES=(colcon python3-colcon-ros python3-colcon-bash python3-colcon-package-selection python3-colcon-output
  python3-colcon-parallel-executor python3-catkin-pkg python3-rosidl rosidl-tools python3-setuptools)

have_tools() {
  [[ -x /usr/bin/colcon && -x $SYS_PY ]] &&
    $SYS_PY -c "import colcon_ros, colcon_bash, colcon_package_selection, colcon_output, colcon_parallel_executor, \
      catkin_pkg, rosidl_adapter, setuptools" 2>/dev/null
}

if ! have_tools; then
  if [[ ${CI:-} == true && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "ros checks: installing ${APT_PACKAGES[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq &&
      apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null ||
      echo "ros checks: apt-get failed"
  fi
  if ! have_tools; then
    echo "ros checks: SKIPPED: Debian's colcon / rosidl parser are not available for $SYS_PY" \
      "(apt-get install ${APT_PACKAGES[*]})"
    exit 0
  fi
fi

ws=$(mktemp -d)
trap 'rm -rf "$ws"' EXIT

echo "ros checks: colcon build --packages-select codi_ros"
# PATH: the build must use Debian's python3 (the one ROS uses), not a virtual environment's.
PATH=/usr/bin:/bin /usr/bin/colcon --log-base "$ws/log" build --base-paths codi_ros \
  --packages-select codi_ros --build-base "$ws/build" --install-base "$ws/install"

prefix=$ws/install/codi_ros
for f in lib/codi_ros/codi share/ament_index/resource_index/packages/codi_ros share/codi_ros/package.xml; do
  [[ -e $prefix/$f ]] || { echo "ros checks: FAILED: colcon install lacks $f"; exit 1; }
done
shared() { find config launch models -type f ! -name '.*' ! -path '*/__pycache__/*' 2>/dev/null | sort; }
if ! diff <(shared) <(cd "$prefix/share/codi_ros" && shared); then
  echo "ros checks: FAILED: share/codi_ros differs from the repository's config/ launch/ models/ (< repo, > installed)"
  exit 1
fi
found=$(cd "$ws" && set +u && source "$ws/install/setup.bash" && env -u CODI_SHARE PATH=/usr/bin:/bin \
  $SYS_PY -c "from codi_ros.paths import share_dir; print(share_dir())")
if [[ $found != "$prefix/share/codi_ros" ]]; then
  echo "ros checks: FAILED: codi_ros.paths.share_dir() in the colcon install is $found"
  exit 1
fi
echo "ros checks: colcon install OK (executables in lib/codi_ros, share/codi_ros found by codi_ros.paths)"

echo "ros checks: codi_msgs interfaces (rosidl translate to .idl + parse)"
bash "$repo/scripts/check_interfaces.sh" "$repo/codi_msgs"

echo "ros checks: launch files and node parameters"
python3 "$repo/scripts/check_ros_static.py"
