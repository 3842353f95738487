"""Test-wide settings: headless MuJoCo rendering (EGL; Mesa's software renderer on CPU-only machines)
and a small torch thread count so the suite behaves the same on 2-core CI machines; the FR3 kinematics and
the simulated world as module fixtures shared by the files that need them."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402
import torch  # noqa: E402

from codi_ros.config import load_world_config  # noqa: E402
from codi_ros.control.kinematics import ArmKinematics  # noqa: E402
from codi_ros.sim.world import TwoArmWorld  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module (timing-free, reproducible numerics); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def kinematics() -> ArmKinematics:
    """The FR3's kinematics (control.kinematics.ArmKinematics), built once per module."""
    return ArmKinematics()


@pytest.fixture(scope="module")
def world() -> TwoArmWorld:
    """The simulated two-arm world of the shipped world.yaml, built once per module."""
    return TwoArmWorld(load_world_config())
