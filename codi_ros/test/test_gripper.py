"""The hand: commanded widths -> franka_gripper goals (control/gripper.py), and the simulated Franka hand that
serves them (sim/hand.py SimulatedHand), in-process (``codi eval``) as in the simulated graph."""

from __future__ import annotations

import numpy as np
import pytest
from logic_fakes import WORLD, texts

from codi_ros.control.gripper import GripperCommander
from codi_ros.frames import yaw_of
from codi_ros.ros.sim_bridge import SimBridge
from codi_ros.sim.physics_model import posture_for
from codi_ros.sim.tasks import HANDOVER

G = WORLD.gripper


def test_widths_become_one_grasp_and_one_open_with_hysteresis():
    g = GripperCommander(WORLD)
    assert g.command(None, 0.0) is None and g.command(float("nan"), 0.0) is None   # no width commanded yet
    first = g.command(0.08, 0.0)
    assert (first.action, first.width) == ("move", WORLD.control.gripper_max_width)
    assert g.finished(first.seq, True, "", 0.1) is None
    for w in (0.08, 0.08 - G.move_step / 2, G.open_above - 1e-3, G.close_below + 1e-3):   # open, the band
        assert g.command(w, 0.2) is None
    grasp = g.command(G.close_below - 1e-3, 0.3)
    assert (grasp.action, grasp.width, grasp.force, grasp.epsilon) == ("grasp", WORLD.cube.size, G.force, G.epsilon)
    assert g.command(0.0, 0.35) is None                     # still closing: nothing more
    assert g.finished(grasp.seq, True, "", 0.6) is None
    assert g.command(G.open_above - 1e-3, 0.7) is None      # the band keeps the grip
    release = g.command(0.07, 0.8)                           # the demonstrations' release width: there
    assert (release.action, release.width) == ("move", 0.07)
    assert g.finished(release.seq, True, "", 0.9) is None and g.command(0.072, 1.0) is None
    assert g.command(0.08, 1.1).width == WORLD.control.gripper_max_width


def test_a_wish_that_changes_while_a_goal_runs_is_sent_when_it_ends():
    g = GripperCommander(WORLD)
    grasp = g.command(0.0, 0.0)
    assert g.command(0.08, 0.1) is None and g.command(0.0, 0.15) is None and g.command(0.08, 0.2) is None
    nxt = g.finished(grasp.seq, True, "", 0.4)              # the newest wish only: open
    assert nxt.action == "move" and nxt.seq == grasp.seq + 1


def test_a_failed_grasp_reopens_the_hand_and_the_next_grasp_waits_for_an_open_command():
    """A closed hand beside the cube is no demonstrated state: the hand reopens at once; commanded closed
    widths do not close it again until an open one came first (then the policy has approached anew)."""
    g = GripperCommander(WORLD)
    grasp = g.command(0.0, 0.0)
    reopen = g.finished(grasp.seq, False, "nothing grasped", 0.5)
    assert (reopen.action, reopen.width) == ("move", WORLD.control.gripper_max_width)
    assert texts(g.pop_log()) == [f"gripper grasp to {WORLD.cube.size:.3f} m failed: nothing grasped; reopening "
                                  "(the next grasp waits for an open command)"]
    assert g.finished(reopen.seq, True, "", 0.7) is None
    assert g.command(0.0, 0.8) is None and g.command(0.0, 0.9) is None      # still closed: the hand stays open
    assert g.command(0.08, 1.0) is None                                      # open, as it is: re-armed
    assert g.command(0.0, 1.1).action == "grasp"


def test_a_grasp_that_loses_the_cube_reopens_the_hand():
    """The grasp goal succeeded, then the fingers closed further (the cube slipped out; franka_gripper says
    nothing): the measured width shows it, and the hand reopens as after a failed grasp."""
    g = GripperCommander(WORLD)
    grasp = g.command(0.0, 0.0)
    assert g.command(None, 0.1, 0.02) is None                                  # still closing: nothing to judge
    assert g.finished(grasp.seq, True, "", 0.3) is None
    assert g.command(None, 0.4, WORLD.cube.size - G.epsilon / 2) is None       # holding (squeezed a little)
    assert g.command(None, 0.45, float("nan")) is None                         # not measured
    reopen = g.command(None, 0.5, 0.01)
    assert (reopen.action, reopen.width) == ("move", WORLD.control.gripper_max_width)
    assert "the cube slipped out; reopening" in texts(g.pop_log())[0]
    assert g.finished(reopen.seq, True, "", 0.7) is None and g.command(0.0, 0.8) is None   # waits for an open


def test_a_goal_past_its_timeout_is_given_up_sent_again_and_its_late_result_ignored():
    g = GripperCommander(WORLD)
    grasp = g.command(0.0, 0.0)
    assert g.command(0.0, G.timeout - 0.01) is None
    again = g.command(0.0, G.timeout + 0.01)
    assert again.action == "grasp" and again.seq != grasp.seq
    assert "did not finish within" in texts(g.pop_log())[0]
    assert g.finished(grasp.seq, True, "", G.timeout + 0.1) is None and g.running[0] == again   # late: ignored
    assert g.finished(again.seq, True, "", G.timeout + 0.5) is None and g.done.action == "grasp"


def hand_over_cube(world, arm="left"):
    """The arm's open fingers around the resting cube (tool at the cube centre, fingers across its faces)."""
    frame = WORLD.base_frame(arm)
    xy = np.array(frame.xy) + 0.5 * np.array([np.cos(frame.yaw), np.sin(frame.yaw)])   # 0.5 m ahead of the base
    q = posture_for(world.executors[arm].kinematics, np.asarray(WORLD.home_qpos),
                    frame.point_to_base(np.r_[xy, WORLD.cube.size / 2]))
    world.reset(cube_xy=tuple(xy), arm_qpos={arm: q})
    tool_yaw = yaw_of(world.data.site_xmat[world.arms[arm].tcp].reshape(3, 3))
    world.reset(cube_xy=tuple(xy), cube_yaw=tool_yaw, arm_qpos={arm: q})


def run_goal(world, hand, action, width, epsilon=0.0, seconds=2.0):
    results = []
    hand.start(action, width, epsilon, lambda ok, err, w: results.append((ok, err, w)))
    while not results and world.time < seconds + 10:
        world.step(0.01)                                     # the world updates its hands
    return results[0]


def test_the_simulated_hand_grasps_the_cube_and_fails_on_nothing(world):
    hand = world.hands["left"]
    hand_over_cube(world)
    ok, err, width = run_goal(world, hand, "grasp", WORLD.cube.size, G.epsilon)
    assert ok and err == "" and width == pytest.approx(WORLD.cube.size, abs=G.epsilon)
    ok, _, width = run_goal(world, hand, "move", WORLD.control.gripper_max_width)
    assert ok and width == pytest.approx(WORLD.control.gripper_max_width, abs=0.005)
    world.reset()                                            # no cube between the fingers
    ok, err, width = run_goal(world, hand, "grasp", WORLD.cube.size, G.epsilon)
    assert not ok and "nothing grasped" in err and width < 0.01


def test_a_new_goal_or_an_episode_reset_aborts_the_running_one(world):
    bridge, results = SimBridge(world), []
    bridge.reset(HANDOVER, seed=0, index=0)
    hand = world.hands["left"]
    hand.start("grasp", WORLD.cube.size, G.epsilon, lambda *r: results.append(r))
    hand.start("move", 0.08, 0.0, lambda *r: results.append(r))
    bridge.reset(HANDOVER, seed=0, index=1)
    assert [r[:2] for r in results] == [(False, "preempted by a new goal"), (False, "episode reset")]
    with pytest.raises(ValueError, match="action"):
        hand.start("squeeze", 0.0, 0.0, lambda *r: None)


def test_in_process_widths_take_the_graphs_gripper_path(world):
    """``codi eval`` drives the hand as the action node does: through the commander's hysteresis and goals, so
    a width inside the band leaves the fingers as they are, and a grasp of nothing is reported and reopens
    the hand, which closes again only after an open command."""
    world.reset()
    action = np.zeros(7)

    def command(width, steps=10):
        action[6] = width
        for _ in range(steps):
            world.apply_action("left", action)
            world.step_control()
        return world.gripper_width("left")

    assert command(G.open_above - 1e-3) == pytest.approx(WORLD.control.gripper_max_width, abs=0.005)   # the band
    assert command(0.0) == pytest.approx(WORLD.control.gripper_max_width, abs=0.005)   # grasped nothing: reopened
    assert any("nothing grasped; reopening" in text for _, text in world.events)
    assert command(0.0, steps=1) > 0.07                      # still commanded closed: stays open
    command(0.08, steps=1)
    assert min(command(0.0, steps=1) for _ in range(3)) < 0.01   # closes once more (on nothing again)
