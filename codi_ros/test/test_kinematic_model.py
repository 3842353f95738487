"""Batched kinematic cost simulator: integration, frames, grasp / carry / release of the cube."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codi_ros.config import load_world_config
from codi_ros.core.kinematic_model import KinematicModel, SimState, clip_to_limits
from codi_ros.frames import ArmState, CubeState, WorldState

pytestmark = pytest.mark.usefixtures("one_thread")
WORLD = load_world_config()
HALF = 0.5 * WORLD.cube.size
OPEN, CLOSED = WORLD.control.gripper_max_width, 0.0


def state(left_ee=(-0.35, 0.0, 0.2), right_ee=(0.35, 0.0, 0.2), cube=(-0.35, 0.0, HALF), widths=(OPEN, OPEN)):
    return SimState(ee_pos=torch.tensor([left_ee, right_ee]), gripper_width=torch.tensor(widths),
                    cube_pos=torch.tensor(cube), goal=torch.tensor([0.35, 0.0, HALF]),
                    base_xy=torch.tensor([a.base_xy for a in WORLD.arms]),
                    base_yaw=torch.tensor([a.base_yaw for a in WORLD.arms]))


def chunk(steps=16, left=(0.0, 0.0, 0.0), right=(0.0, 0.0, 0.0), left_width=OPEN, right_width=OPEN):
    """(1, 2, steps, 7) constant actions, base frames."""
    a = torch.zeros(1, 2, steps, 7)
    a[0, 0, :, :3], a[0, 1, :, :3] = torch.tensor(left), torch.tensor(right)
    a[0, 0, :, 6], a[0, 1, :, 6] = left_width, right_width
    return a


MODEL = KinematicModel(WORLD)


def test_integration_matches_velocity_times_dt_in_the_world_frame():
    s = state()
    traj = MODEL.rollout(s, chunk(left=(0.1, 0.05, -0.02), right=(0.1, 0.0, 0.0)))
    k = torch.arange(1, 17, dtype=torch.float32)[:, None]
    dt = WORLD.control.dt
    assert torch.allclose(traj.ee_pos[0, 0], s.ee_pos[0] + k * dt * torch.tensor([0.1, 0.05, -0.02]), atol=1e-6)
    # The right base faces -x: its +x base velocity moves it towards -x in the world (and +y base is -y world).
    assert torch.allclose(traj.ee_pos[0, 1], s.ee_pos[1] + k * dt * torch.tensor([-0.1, 0.0, 0.0]), atol=1e-6)
    assert traj.ee_pos.shape == (1, 2, 16, 3) and traj.cube_pos.shape == (1, 16, 3)


def test_commands_are_clipped_to_speed_limits_and_reach():
    s = state()
    traj = MODEL.rollout(s, chunk(steps=2, left=(3.0, 0.0, 0.0)))
    assert traj.ee_pos[0, 0, 0, 0] - s.ee_pos[0, 0] == pytest.approx(WORLD.control.max_linear_speed * WORLD.control.dt)
    far = MODEL.rollout(s, chunk(steps=16, left=(0.3, 0.0, 0.0)))           # 0.48 m towards the other arm
    radius = (far.ee_pos[0, 0, :, :2] - torch.tensor(WORLD.arms[0].base_xy)).norm(dim=-1)
    assert radius.max() == pytest.approx(WORLD.reach.max_radius, abs=1e-5)
    low = MODEL.rollout(s, chunk(left=(0.0, 0.0, -0.3)))
    assert low.ee_pos[0, 0, -1, 2] == pytest.approx(MODEL.config.ee_min_height)
    a = torch.tensor([[1.0, 1.0, 1.0, 3.0, 0.0, 0.0, 0.2], [0.1, 0.0, 0.0, 0.0, 0.5, 0.0, -0.1]])
    clipped = clip_to_limits(a, WORLD.control)
    assert clipped[0, :3].norm() == pytest.approx(WORLD.control.max_linear_speed)
    assert clipped[0, 3:6].norm() == pytest.approx(WORLD.control.max_angular_speed)
    assert clipped[:, 6].tolist() == pytest.approx([WORLD.control.gripper_max_width, 0.0])
    assert torch.equal(clipped[1, :6], a[1, :6])  # within limits: unchanged


def test_closed_gripper_at_the_cube_carries_it():
    s = state(cube=(-0.35, 0.0, 0.02 + HALF), left_ee=(-0.35, 0.0, 0.02 + HALF))
    traj = MODEL.rollout(s, chunk(left=(0.1, 0.0, 0.05), left_width=CLOSED))
    assert torch.allclose(traj.cube_pos[0], traj.ee_pos[0, 0], atol=1e-6)       # moves with the hand
    assert (traj.holder[0] == 0).all()
    assert traj.cube_pos[0, -1, 0] > s.cube_pos[0] + 0.15


def test_open_gripper_leaves_the_cube():
    s = state(left_ee=(-0.35, 0.0, HALF))
    traj = MODEL.rollout(s, chunk(left=(0.1, 0.0, 0.05), left_width=OPEN))
    assert torch.allclose(traj.cube_pos[0], s.cube_pos.expand(16, 3))
    assert (traj.holder[0] == -1).all()
    # closing far from the cube grasps nothing either
    far = MODEL.rollout(state(left_ee=(-0.35, 0.1, HALF)), chunk(left=(0.1, 0.0, 0.0), left_width=CLOSED))
    assert torch.allclose(far.cube_pos[0], s.cube_pos.expand(16, 3))


def test_opening_releases_the_cube_onto_the_table():
    s = state(left_ee=(-0.35, 0.0, HALF), cube=(-0.35, 0.0, HALF), widths=(WORLD.cube.size, OPEN))
    a = chunk(left=(0.0, 0.0, 0.1), left_width=CLOSED)
    a[0, 0, 5:, :3] = torch.tensor([0.1, 0.0, 0.0])
    a[0, 0, 8:, 6] = OPEN
    traj = MODEL.rollout(s, a)
    assert MODEL.initial_holder(s) == 0                               # measured width at the cube size: held
    assert traj.cube_pos[0, 4, 2] == pytest.approx(HALF + 5 * 0.01)  # lifted 1 cm per step
    released = traj.cube_pos[0, 8]
    assert released[2] == pytest.approx(HALF) and released[0] == pytest.approx(traj.ee_pos[0, 0, 7, 0])
    assert torch.allclose(traj.cube_pos[0, 8:], released.expand(8, 3))   # then rests
    assert (traj.holder[0, 8:] == -1).all()


def test_commanding_the_measured_width_keeps_the_grip():
    """Hysteresis: a holder releases only when commanded wider than the cube (+ margin), not at the cube size."""
    s = state(left_ee=(-0.35, 0.0, HALF), widths=(WORLD.cube.size, OPEN))
    traj = MODEL.rollout(s, chunk(left=(0.0, 0.0, 0.1), left_width=WORLD.cube.size))
    assert (traj.holder[0] == 0).all() and traj.cube_pos[0, -1, 2] > 0.1
    # ... but an empty gripper commanded to the cube size does not grasp
    empty = MODEL.rollout(state(left_ee=(-0.35, 0.0, HALF)), chunk(left=(0.0, 0.0, 0.1), left_width=WORLD.cube.size))
    assert (empty.holder[0] == -1).all()


def test_handover_passes_the_cube_to_the_closing_arm():
    p = (0.0, 0.0, 0.1)
    s = state(left_ee=p, right_ee=(0.01, 0.0, 0.1), cube=p, widths=(WORLD.cube.size, OPEN))
    a = chunk(left_width=CLOSED, right_width=CLOSED)
    a[0, 0, 4:, 6] = OPEN                               # left lets go at step 4 while right holds on
    a[0, 1, 6:, :3] = torch.tensor([0.1, 0.0, 0.0])     # right then carries it towards its own base (-x world)
    traj = MODEL.rollout(s, a)
    assert traj.holder[0].tolist() == [0] * 4 + [1] * 12
    assert traj.cube_pos[0, -1, 0] < -0.05 and traj.cube_pos[0, -1, 2] == pytest.approx(0.1)


def test_batched_candidates_are_independent():
    s = state(left_ee=(-0.35, 0.0, HALF))
    a = torch.cat([chunk(left=(0.1, 0.0, 0.1), left_width=CLOSED), chunk(left=(0.1, 0.0, 0.1), left_width=OPEN)])
    traj = MODEL.rollout(s, a)
    assert traj.cube_pos[0, -1, 2] > 0.1 and traj.cube_pos[1, -1, 2] == pytest.approx(HALF)
    with pytest.raises(ValueError, match="chunks must be"):
        MODEL.rollout(s, torch.zeros(4, 3, 16, 7))


def test_sim_state_from_world_state():
    arms = {n: ArmState(ee_pos=np.array([x, 0.1, 0.2]), ee_rot=np.eye(3), ee_linvel=np.zeros(3),
                        ee_angvel=np.zeros(3), gripper_width=0.04) for n, x in (("right", 0.3), ("left", -0.3))}
    ws = WorldState(arms=arms, cube=CubeState(pos=np.array([0.0, 0.0, HALF]), quat=np.array([1.0, 0, 0, 0])),
                    goal=np.array([0.35, 0.0, HALF]))
    s = SimState.from_world(ws, WORLD)
    assert s.ee_pos[:, 0].tolist() == pytest.approx([-0.3, 0.3])      # config order, not dict order
    assert s.base_yaw.tolist() == pytest.approx([0.0, math.pi])
    assert s.ee_pos.dtype == torch.float32


def test_the_kinematic_model_is_a_black_box_and_the_planner_says_so_at_construction():
    chunks = chunk().requires_grad_(True)
    with pytest.raises(ValueError, match="black box"):
        MODEL.rollout(state(), chunks)
    with torch.no_grad():                   # what the score-function estimator does
        assert MODEL.rollout(state(), chunks).ee_pos.shape == (1, 2, 16, 3)
    from dataclasses import replace

    from codi_ros.config import ConfigError
    from codi_ros.core.guidance import GuidanceConfig
    from codi_ros.core.planner import Planner, PlannerConfig
    from codi_ros.core.policy import DiffusionPolicy, PolicyConfig

    config = replace(PlannerConfig(), guidance=GuidanceConfig(estimator="reparameterized"))
    with pytest.raises(ConfigError, match="estimator 'reparameterized' needs a differentiable cost"):
        Planner(DiffusionPolicy(PolicyConfig(horizon=16)), WORLD, config)


def test_rollouts_of_random_candidates_follow_the_rules_step_by_step():
    """Replays each candidate's rollout with the rules written out per step (positions, reach, grasp, carry)."""
    g = torch.Generator().manual_seed(3)
    s = state(left_ee=(-0.35, 0.0, HALF + 0.01), cube=(-0.34, 0.0, HALF), widths=(0.02, OPEN))
    chunks = torch.randn(32, 2, 16, 7, generator=g, dtype=torch.float64) * 0.2
    chunks[..., 6] = torch.rand(32, 2, 16, generator=g, dtype=torch.float64) * 0.1 - 0.01
    traj = MODEL.rollout(s, chunks)
    assert traj.ee_pos.dtype == torch.float64
    cfg, dt, size = MODEL.config, WORLD.control.dt, WORLD.cube.size
    base = s.base_xy.double()
    rot = [torch.tensor([[math.cos(y), -math.sin(y)], [math.sin(y), math.cos(y)]], dtype=torch.float64)
           for y in s.base_yaw.tolist()]
    lo = torch.tensor([-WORLD.table.size[0] / 2, -WORLD.table.size[1] / 2, cfg.ee_min_height], dtype=torch.float64)
    hi = torch.tensor([WORLD.table.size[0] / 2, WORLD.table.size[1] / 2, cfg.ee_max_height], dtype=torch.float64)
    for m in range(32):
        ee, cube, holder = s.ee_pos.double().clone(), s.cube_pos.double().clone(), int(MODEL.initial_holder(s))
        for k in range(16):
            a = clip_to_limits(chunks[m, :, k], WORLD.control)
            new = torch.stack([torch.cat([rot[n] @ a[n, :2], a[n, 2:3]]) for n in range(2)]) * dt + ee
            new = torch.minimum(torch.maximum(new, lo), hi)
            rel = new[:, :2] - base
            new[:, :2] = base + rel * (WORLD.reach.max_radius / rel.norm(dim=-1, keepdim=True).clamp_min(
                WORLD.reach.max_radius))
            if not (holder >= 0 and a[holder, 6] <= size + cfg.hold_width_margin):
                dist = (ee - cube).norm(dim=-1)
                can = (a[:, 6] < size) & (dist < cfg.grasp_radius)
                holder = int(torch.where(can, dist, math.inf).argmin()) if can.any() else -1
            cube = cube + new[holder] - ee[holder] if holder >= 0 else torch.cat([cube[:2], cube.new_zeros(1)])
            cube[2] = max(float(cube[2]), HALF)
            ee = new
            assert int(traj.holder[m, k]) == holder, (m, k)
            torch.testing.assert_close(traj.ee_pos[m, :, k], ee, atol=1e-9, rtol=0)
            torch.testing.assert_close(traj.cube_pos[m, k], cube, atol=1e-9, rtol=0)
    assert (traj.holder >= 0).any() and (traj.holder == -1).any()      # both grasps and free cubes occurred
