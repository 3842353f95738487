"""codi_ros: an ament_python ROS 2 package that is also an ordinary pip-installable package.

Both ``pip install ./codi_ros`` and ``colcon build`` install the repository's top-level launch/,
config/ and models/ folders into ``<prefix>/share/codi_ros/``, where ``codi_ros.paths`` finds them.
Use ``pip install ./codi_ros``, not ``pip install -e``: recent setuptools rejects setup.cfg's ament
``[develop] script_dir`` option in editable mode.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "codi_ros"
HERE = Path(__file__).resolve().parent
VERSION = re.search(r'^__version__ = "([^"]+)"$', (HERE / PACKAGE / "version.py").read_text(), re.M).group(1)

# One console script per ROS node, e.g. "planner_node = codi_ros.nodes.planner:main"; `ros2 run`
# finds them in lib/codi_ros (setup.cfg). Filled in as the nodes are written.
NODE_ENTRY_POINTS: list[str] = [
    "sim_node = codi_ros.nodes.sim_node:main",
    "arm_state_node = codi_ros.nodes.arm_state_node:main",
    "aruco_node = codi_ros.nodes.aruco_node:main",
    "action_node = codi_ros.nodes.action_node:main",
    "coordinator_node = codi_ros.nodes.coordinator_node:main",
    "cost_service_node = codi_ros.nodes.cost_service_node:main",
]


def share_files(folder: str) -> list[tuple[str, list[str]]]:
    """data_files installing ``../<folder>/**`` into ``share/codi_ros/<folder>/**``, sub-folders kept.

    Source paths are relative to this file's folder, which is where pip and colcon run it.
    Hidden files (.gitkeep) and __pycache__ are left out; a missing folder installs nothing.
    """
    root = HERE.parent / folder
    dirs = [root, *root.rglob("*")] if root.is_dir() else []
    entries = []
    for d in sorted(p for p in dirs if p.is_dir() and "__pycache__" not in p.parts):
        files = sorted(f"../{f.relative_to(HERE.parent).as_posix()}" for f in d.iterdir()
                       if f.is_file() and not f.name.startswith("."))
        if files:
            entries.append((f"share/{PACKAGE}/{d.relative_to(HERE.parent).as_posix()}", files))
    return entries


setup(
    name=PACKAGE,
    version=VERSION,
    description="Coordinated Diffusion (CoDi) for two Franka FR3 arms: policies, simulation and ROS 2 nodes",
    maintainer="codi maintainers",
    maintainer_email="codi@example.com",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *share_files("launch"),
        *share_files("config"),
        *share_files("models"),
    ],
    install_requires=[
        "torch==2.13.0",
        "numpy>=1.26,<3",          # 1.26 is Ubuntu 24.04's (ROS 2 Jazzy) system numpy
        "mujoco>=4.0,<5",
        "numba>=0.61,<1",                      # the kinematic cost simulator's compiled loop (core/kinematic_model)
        "safetensors>=0.8,<1",
        "pyyaml>=6.0,<7",
        "tqdm>=4.66,<5",
        "matplotlib>=3.8,<4",
        "imageio>=2.30,<3",                    # demo video / frame strips, cube marker textures
        "opencv-contrib-python-headless>=4.7",  # ArUco (cv2.aruco.ArucoDetector) for the aruco_node
    ],
    zip_safe=True,
    entry_points={"console_scripts": ["codi = codi_ros.cli:main", *NODE_ENTRY_POINTS]},
)
