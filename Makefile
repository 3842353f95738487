# codi: the two commands of the README.
#   make demo   set up .venv (torch, then codi_ros and its dependencies) and run the demo
#   make test   the same set-up plus the test tools, then ruff, the nodes under a real rclpy in .ros-venv
#               (test-ros), and pytest (PYTEST_ARGS selects tests)
#   make fuzz   the service request fuzz tests, longer than in `make test`
# Re-runs are quick: each set-up step leaves a stamp file in .venv and re-runs only when its inputs change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
TEST_TOOLS := "pytest>=8,<10" ruff==0.17.6 "catkin_pkg>=1.0" hypothesis==6.170.15
PYTEST_ARGS ?=

# What `pip install ./codi_ros` copies: the Python package and the shared folders (share/codi_ros).
CODI_SOURCES := codi_ros/setup.py codi_ros/setup.cfg codi_ros/package.xml \
	$(shell find codi_ros/codi_ros config launch models -type f -not -path '*/__pycache__/*' 2>/dev/null)

# The nodes under a real rclpy (ROS 2 Jazzy from the ros-jazzy-* PyPI wheels, codi_msgs built with CMake)
# run in their own environment: scripts/ros_venv.sh. Those wheels exist for Linux x86_64 + CPython 3.11
# only, and codi_msgs needs cmake and a C/C++ compiler; elsewhere `make test` skips these tests with a
# message (and fails in CI). ROS_TESTS= skips them.
ROS_VENV := .ros-venv
ROS_TESTS ?= codi_ros/test/test_ros_runtime.py
MSG_SOURCES := $(shell find codi_msgs codi_ros/test/interfaces -type f 2>/dev/null)

.PHONY: demo test test-ros fuzz clean

demo: $(VENV)/.codi.stamp
	$(VENV)/bin/codi demo --out runs/demo

test: $(VENV)/.codi.stamp $(VENV)/.test-tools.stamp
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory test-ros
	$(PY) -m pytest $(PYTEST_ARGS)

# the request fuzz tests (test_service_fuzz.py, hypothesis) with 50,000 requests per service instead of CI's 2,000
fuzz: $(VENV)/.codi.stamp $(VENV)/.test-tools.stamp
	CODI_FUZZ_EXAMPLES=50000 $(PY) -m pytest codi_ros/test/test_service_fuzz.py

test-ros:
ifneq ($(strip $(ROS_TESTS)),)
	@if bash scripts/ros_venv.sh --check $(PYTHON); then \
		$(MAKE) --no-print-directory $(ROS_VENV)/.codi.stamp && $(ROS_VENV)/bin/python -m pytest $(ROS_TESTS); \
	else \
		echo "ROS runtime tests SKIPPED ($(ROS_TESTS))"; [ "$${CI:-}" != true ]; \
	fi
endif

$(ROS_VENV)/.codi.stamp: scripts/ros_venv.sh $(CODI_SOURCES) $(MSG_SOURCES)
	bash scripts/ros_venv.sh $(ROS_VENV) $(PYTHON)
	touch $@

# torch first, from the exact version (a bare `torch` requirement would pull a CUDA build).
$(VENV)/.torch.stamp:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "torch==$(TORCH_VERSION)"
	touch $@

# A regular (not editable) install: see codi_ros/setup.py. setuptools' build folder is removed
# before (so that deleted modules do not linger in the installed copy) and after (a clean tree).
$(VENV)/.codi.stamp: $(VENV)/.torch.stamp $(CODI_SOURCES)
	rm -rf codi_ros/build
	$(PIP) install ./codi_ros
	rm -rf codi_ros/build
	touch $@

$(VENV)/.test-tools.stamp: $(VENV)/.torch.stamp
	$(PIP) install $(TEST_TOOLS)
	touch $@

clean:
	rm -rf $(VENV) $(ROS_VENV) codi_ros/build codi_ros/*.egg-info
