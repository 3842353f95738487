# codi: the two commands of the README.
#   make demo   set up .venv (torch, then codi_ros and its dependencies) and run the demo
#   make test   the same set-up plus the test tools, then ruff and pytest (PYTEST_ARGS selects tests)
# Re-runs are quick: each set-up step leaves a stamp file in .venv and re-runs only when its inputs change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
TEST_TOOLS := "pytest>=8,<10" ruff==0.17.6 "catkin_pkg>=1.0"
PYTEST_ARGS ?=

# What `pip install ./codi_ros` copies: the Python package and the shared folders (share/codi_ros).
CODI_SOURCES := codi_ros/setup.py codi_ros/setup.cfg codi_ros/package.xml \
	$(shell find codi_ros/codi_ros config launch models -type f -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: demo test clean

demo: $(VENV)/.codi.stamp
	$(VENV)/bin/codi demo --out runs/demo

test: $(VENV)/.codi.stamp $(VENV)/.test-tools.stamp
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

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
	rm -rf $(VENV) codi_ros/build codi_ros/*.egg-info
