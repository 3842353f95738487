"""The MuJoCo cost simulator agrees with the kinematic model where both should be right."""

import numpy as np
import pytest
import torch

from codi_ros.config import load_world_config
from codi_ros.core.kinematic_model import KinematicModel, SimState
from codi_ros.sim.physics_model import PhysicsModel


@pytest.fixture(scope="module")
def cfg():
    return load_world_config()


def test_physics_and_kinematic_rollouts_agree(cfg):
    state = SimState(ee_pos=torch.tensor([[-0.3, 0.1, 0.025], [0.39, 0.0, 0.45]]),
                     gripper_width=torch.tensor([0.08, 0.08]), cube_pos=torch.tensor([-0.3, 0.1, 0.025]),
                     goal=torch.tensor([0.3, 0.0, 0.025]), base_xy=torch.tensor([[-0.7, 0.0], [0.7, 0.0]]),
                     base_yaw=torch.tensor([0.0, np.pi]))
    chunks = torch.zeros(2, 2, 16, 7)
    chunks[..., 6] = 0.08
    chunks[0, 0, 3:, 6] = 0.0          # candidate 0: the left arm closes on the cube, then lifts it
    chunks[0, 0, 8:, 2] = 0.2
    chunks[1, 1, :, 0] = 0.1           # candidate 1: the right arm moves along its base +x (world -x)
    physics = PhysicsModel(cfg).rollout(state, chunks)
    kinematic = KinematicModel(cfg).rollout(state, chunks)
    assert physics.cube_pos[0, -1, 2] > 0.12, "the grasped cube was not lifted in MuJoCo"
    assert physics.holder[0, -1] == 0 and kinematic.holder[0, -1] == 0
    assert physics.cube_pos[1, -1, 2] < 0.03 and physics.holder[1, -1] == -1
    np.testing.assert_allclose(physics.ee_pos[:, :, -1], kinematic.ee_pos[:, :, -1], atol=0.03)
    np.testing.assert_allclose(physics.cube_pos[:, -1], kinematic.cube_pos[:, -1], atol=0.03)
    assert physics.ee_pos[1, 1, -1, 0] < 0.39 - 0.12                  # moved towards -x in the world
