#!/usr/bin/env bash
# Source ROS 2 Jazzy and the codi workspace, then run the given command (default: bash).
set -e
# shellcheck disable=SC1091
source /opt/ros/jazzy/setup.bash
# shellcheck disable=SC1091
source /ws/install/setup.bash
exec "$@"
