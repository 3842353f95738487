"""The coordinator: observed state, /codi/plan, the receding-horizon loop and /codi/stop (no rclpy)."""

from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest
from fakes import GaussianPolicy, small_planner_config
from logic_fakes import DT, WORLD, FakePlanner, H, observe, state_msg, texts

from codi_ros.control.kinematics import ArmKinematics, arm_state_from_joints
from codi_ros.core.planner import Planner
from codi_ros.ros.coordinator import Coordinator
from codi_ros.ros.messages import (
    arm_state_msg,
    parse_chunk,
)


def test_latency_aware_coordinator_commits_what_the_arms_run_while_it_plans():
    """d from the recent plans' latency (0.09 s, + 0.2 s on the way to the arms: 3 steps): plan 2 starts
    with the 3 actions of plan 1 that the action nodes run meanwhile, and its chunks say so (committed 3: taken
    over at start + 0.3 s).
    /codi/start begins an episode: the planner is reset, as codi eval resets it per episode."""
    from codi_ros.core.realtime import RealtimeConfig

    planner = FakePlanner(latency=0.09, ramp=True)
    coord = Coordinator(WORLD, planner, realtime=RealtimeConfig(initial_latency=0.09))
    coord.start()
    observe(coord, 1.0)
    first = coord.tick(1.0)
    assert planner.resets == 1                                           # before its first plan
    assert planner.committed[0]["left"].shape == (3, 7) and not np.any(planner.committed[0]["left"][:, :6])  # holding
    observe(coord, 1.4)
    second = coord.tick(1.4)
    np.testing.assert_allclose(planner.committed[1]["left"][:, 0], [0.05] * 3)    # plan 1's actions 4..6
    assert all(c["committed"] == 3 for c in first + second)
    assert [c["twists"][3]["linear"]["x"] for c in second] == [0.1, 0.1]           # its own actions from step 3
    naive = Coordinator(WORLD, FakePlanner())
    naive.start()
    observe(naive, 1.0)
    assert all(c["committed"] == 0 for c in naive.tick(1.0))


def test_latency_aware_coordinator_predicts_the_tools_from_the_arms_joint_states():
    """Arm states with joints: the planner gets each tool where its mirror executor predicts it when the
    plan takes over (0.3 s of committed motion at 0.05 m/s, plus the states' age, behind first order: the
    joint limits and the tracking lag); without joints in the messages, first order (None)."""
    from codi_ros.core.realtime import RealtimeConfig

    kinematics, q = ArmKinematics(), np.array(WORLD.home_qpos)
    planner = FakePlanner(latency=0.09)
    coord = Coordinator(WORLD, planner, realtime=RealtimeConfig(initial_latency=0.09))
    coord.start()
    observe(coord, 1.0)
    coord.tick(1.0)                                   # plan 1: holds still for 3 steps, then 0.05 m/s along x
    assert planner.predicted[0] is None               # observe() sends no joints
    starts = {}
    for arm in WORLD.arm_names:
        state = arm_state_from_joints(kinematics, WORLD.base_frame(arm), q, np.zeros(7), 0.08)
        starts[arm] = state.ee_pos
        coord.on_arm_state(arm_state_msg(arm, state, 1.38, joints=(q, np.zeros(7))))
    coord.tick(1.4)
    predicted = planner.predicted[1]
    for arm in WORLD.arm_names:
        moved = WORLD.base_frame(arm).vec_to_base(predicted[arm].ee_pos - starts[arm])
        assert 0.005 < moved[0] < 0.014 and abs(moved[1]) < 1e-3              # along base x, behind 1.6 cm
        assert predicted[arm].gripper_width == 0.08


def test_a_plan_slower_than_its_commitment_is_dropped_by_the_coordinator_and_its_mirrors():
    """d = 3 (0.3 s) but the plan took 0.45 s: its committed actions are over before it could be sent, so the
    action nodes would drop it; the coordinator drops it itself (logged), its mirrors keep the running chunk
    (the next plan commits to that chunk's actions, not to the dropped one's), and the slow plan raises d."""
    from codi_ros.core.realtime import RealtimeConfig

    planner = FakePlanner(latency=0.09, ramp=True)
    coord = Coordinator(WORLD, planner, realtime=RealtimeConfig(initial_latency=0.09))
    coord.start()
    observe(coord, 1.0)
    assert coord.tick(1.0)                                   # plan 1 (0.05 m/s) sent
    planner.latency = 0.45
    observe(coord, 1.4)
    assert coord.tick(1.4) == []                             # plan 2 (0.1 m/s) took 0.45 s > 3 steps: dropped
    assert any("dropped a late plan" in t and "3 committed steps" in t for t in texts(coord.pop_log()))
    observe(coord, 1.9)
    third = coord.tick(1.9)
    d = math.ceil((0.45 + WORLD.executor.delivery_margin) / WORLD.control.dt - 1e-9)   # d covers the slow plan
    assert third and all(c["committed"] == d for c in third)
    np.testing.assert_allclose(planner.committed[2]["left"][:, 0], [0.05] * d)   # plan 1's, not plan 2's


def test_states_and_stops_are_taken_while_the_planner_runs():
    """While a plan runs, another thread (the node's services thread) serves /codi/stop without waiting for it
    and may feed states (the lock is not held while the planner runs); a stop during the plan drops it."""
    import threading

    coord = Coordinator(WORLD, FakePlanner(latency=0.3))
    served = []

    def executor_thread():
        observe(coord, 1.2)
        served.append(coord.stop(1.2))

    def during():
        other = threading.Thread(target=executor_thread)
        other.start()
        other.join(timeout=2.0)
        assert not other.is_alive(), "the executor thread waited for the plan"

    coord.planner.during = during
    coord.start()
    observe(coord, 1.0)
    assert coord.tick(1.0) == [] and not coord.autonomous             # stopped while planning: dropped
    assert served and all(len(c["twists"]) == 0 for c in served[0])   # the stop itself went out at once
    assert coord.observed_state(1.25).stamp == pytest.approx(1.2)     # the state taken during the plan


def test_states_queued_behind_a_long_plan_are_not_mistaken_for_stale_ones():
    """One thread: a 0.45 s plan holds back the state messages, so the tick right after it sees 0.45 s old
    states. It waits for them instead of stopping the arms (in the ROS graph this stopped the arms after
    most plans slower than 0.35 s); states that stay old still stop the arms one tick later."""
    planner = FakePlanner(latency=0.45)
    coord = Coordinator(WORLD, planner)
    coord.start()
    observe(coord, 1.0)
    assert coord.tick(1.0)                                  # plans; "finishes" at 1.45
    assert coord.tick(1.45) == [] and len(planner.states) == 1
    observe(coord, 1.45)                                    # the queued states are taken
    assert coord.tick(1.5) and len(planner.states) == 2
    assert coord.tick(1.95) == []                           # right after the plan: waits once ...
    stop = coord.tick(2.05)                                 # ... then the states really are stale: stop
    assert stop and all(len(c["twists"]) == 0 for c in stop)
    assert any("not planning" in t for t in texts(coord.pop_log()))


def test_the_next_tick_is_asked_for_at_once_only_after_a_plan_as_long_as_the_execution_horizon():
    """The node re-ticks right after a plan only when the next one is already due; after a quicker plan the
    timer's due tick plans (re-ticking until then kept the coordinator's core busy between plans)."""
    horizon = WORLD.horizon.execution * DT
    for latency, again in ((0.3 * horizon, False), (1.1 * horizon, True)):
        coord = Coordinator(WORLD, FakePlanner(latency=latency))
        coord.start()
        observe(coord, 1.0)
        assert coord.tick(1.0)
        assert coord.replan_now(1.0 + latency) is again
        assert coord.replan_now(1.0 + horizon)                  # the due time: the plan is due either way
    idle = Coordinator(WORLD, FakePlanner())
    assert not idle.replan_now(1.0)                        # not autonomous: never


def test_plan_service_fails_cleanly_without_a_state_and_keeps_serving():
    coord = Coordinator(WORLD, FakePlanner())
    resp, publish = coord.handle_plan({}, now=1.0)
    assert not resp["success"] and "no arm 'left' state received yet" in resp["message"] and not publish
    resp, _ = coord.handle_plan({"temperature": -1.0}, now=1.0)
    assert not resp["success"] and resp["message"].startswith("temperature")
    observe(coord, 2.0)
    resp, publish = coord.handle_plan({}, now=2.05)
    assert resp["success"] and not publish
    assert [c["arm"] for c in resp["chunks"]] == list(WORLD.arm_names)
    assert all(len(c["twists"]) == H and c["dt"] == DT and c["header"]["frame_id"] == f"base_{c['arm']}"
               for c in resp["chunks"])
    assert resp["cost"] == 1.5 and {t["name"] for t in resp["cost_terms"]} == {"goal", "engage"}


@pytest.mark.parametrize("arms_t, cube_t, nan, expected", [
    (1.75, None, False, r"arm 'left' state is 0\.25 s old \(limit 0\.20 s\)"),
    (None, 0.9, False, "no cube pose"),
    (None, None, True, "arm 'left' state has NaN"),
])
def test_no_plan_from_stale_or_nan_state(arms_t, cube_t, nan, expected):
    planner = FakePlanner()
    coord = Coordinator(WORLD, planner)
    observe(coord, 2.0, arms_t, cube_t, nan)
    resp, _ = coord.handle_plan({}, now=2.0)
    assert not resp["success"] and re.search(expected, resp["message"]), resp["message"]
    assert not planner.states


def test_plan_uses_fused_cube_and_goal_and_explicit_state_wins():
    planner = FakePlanner()
    coord = Coordinator(WORLD, planner)
    coord.on_goal(np.array([0.35, 0.1, 0.025]))
    observe(coord, 2.0)
    coord.handle_plan({"seed": 7}, now=2.0)
    state, overrides = planner.states[-1]
    np.testing.assert_allclose(state.cube.pos, [-0.3, 0.1, 0.025])
    np.testing.assert_allclose(state.goal, [0.35, 0.1, 0.025])
    assert overrides.seed == 7
    resp, publish = coord.handle_plan({"state": state_msg(goal={"x": -0.1, "y": 0.0, "z": 0.0}), "execute": True}, 2.0)
    assert resp["success"] and len(publish) == 2 and planner.states[-1][0].goal[0] == -0.1


def test_planning_error_is_reported_as_failure():
    coord = Coordinator(WORLD, FakePlanner(fail=True))
    resp, _ = coord.handle_plan({"state": state_msg()}, now=0.0)
    assert not resp["success"] and "cube below the table" in resp["message"]


def test_receding_horizon_replans_after_the_execution_horizon_and_reports_overruns():
    planner = FakePlanner(latency=0.05)
    coord = Coordinator(WORLD, planner)
    coord.start()
    sent = {}
    for k in range(30):                                    # 3 s at 10 Hz
        t = 10.0 + k * DT
        observe(coord, t)
        chunks = coord.tick(t)
        if chunks:
            sent[round(t, 3)] = chunks
    step = WORLD.horizon.execution * DT
    assert list(sent) == pytest.approx([10.0 + i * step for i in range(len(sent))])
    assert len(sent) == -(-30 // WORLD.horizon.execution)
    assert all(c[0]["header"]["stamp"]["sec"] == int(t) for t, c in sent.items())
    assert not [t for lvl, t in coord.pop_log() if "overrun" in t]
    left = (WORLD.horizon.prediction - WORLD.horizon.execution) * DT   # what remains of the running chunk
    planner.latency = left + 0.2                           # slower than that: the arms hold for 0.2 s
    t = max(sent) + step
    observe(coord, t)
    assert coord.tick(t)
    overruns = [t for lvl, t in coord.pop_log() if "overrun" in t]
    assert len(overruns) == 1 and "held for 0.200 s" in overruns[0]


def test_stale_state_in_autonomous_mode_stops_the_arms_once_and_recovers():
    coord = Coordinator(WORLD, FakePlanner())
    coord.start()
    observe(coord, 1.0)
    assert coord.tick(1.0)
    outs = [coord.tick(1.0 + k * DT) for k in range(1, 20)]      # no new arm states: stale from 1.2 s on
    stops = [o for o in outs if o]
    assert len(stops) == 1 and all(len(c["twists"]) == 0 for c in stops[0])
    log = coord.pop_log()
    assert len([t for lvl, t in log if lvl == "warn" and "not planning" in t]) == 1
    observe(coord, 3.0)
    assert coord.tick(3.0) and any("recovered" in t for _, t in coord.pop_log())


def test_stop_during_planning_drops_the_plan():
    coord = Coordinator(WORLD, FakePlanner())
    coord.planner.during = lambda: coord.stop(1.01)
    coord.start()
    observe(coord, 1.0)
    assert coord.tick(1.0) == [] and not coord.autonomous
    resp, publish = coord.handle_plan({"state": state_msg(), "execute": True}, now=2.0)
    assert resp["success"] and not publish and "not executed" in resp["message"]


def test_a_stop_cancels_a_running_plan_within_a_network_call(one_thread):
    """A plan of 1000 denoising steps (seconds) is cancelled by /codi/stop from another thread: the planner
    asks before every score evaluation, so the planning thread is free again within milliseconds."""
    import threading

    planner = Planner(GaussianPolicy(), WORLD, small_planner_config(steps=1000, num_samples=8))
    coord = Coordinator(WORLD, planner)
    observe(coord, 1.0)
    threading.Timer(0.2, lambda: coord.stop(1.2)).start()
    t0 = time.perf_counter()
    resp, publish = coord.handle_plan({"execute": True}, now=1.05)
    assert time.perf_counter() - t0 < 0.5 and not publish
    assert not resp["success"] and resp["message"].startswith("cancelled: /codi/stop")


def test_the_coordinator_stops_the_arms_once_the_cube_rests_at_the_goal():
    """The completion rule of codi eval: the cube rests at the goal, released, for goal.settle_seconds; then
    autonomous mode ends and both arms are told to stop; /codi/start begins the next task."""
    coord = Coordinator(WORLD, FakePlanner())
    coord.on_goal(np.array([-0.3, 0.1, 0.025]))            # where observe() puts the cube
    coord.start()
    sent, t = [], 1.0
    while coord.autonomous and t < 5.0:
        observe(coord, t)
        sent.append((t, coord.tick(t)))
        t = round(t + DT, 3)
    done_at, last = sent[-1]
    assert not coord.autonomous and done_at - 1.0 >= WORLD.goal.settle_seconds
    assert [c["arm"] for c in last] == list(WORLD.arm_names) and all(c["twists"] == [] for c in last)
    assert any("handover complete" in t for _, t in coord.pop_log())
    coord.start()
    observe(coord, t)
    assert coord.tick(t) and coord.autonomous               # a new task: the settle time starts again


def test_stop_sends_empty_chunks_to_every_arm():
    coord = Coordinator(WORLD, FakePlanner())
    coord.start()
    chunks = coord.stop(5.0)
    assert [c["arm"] for c in chunks] == list(WORLD.arm_names) and all(c["twists"] == [] for c in chunks)
    assert not coord.autonomous


def test_plan_service_with_the_real_planner(one_thread):
    planner = Planner(GaussianPolicy(), WORLD, small_planner_config(steps=4, num_samples=8))
    coord = Coordinator(WORLD, planner)
    resp, publish = coord.handle_plan({"state": state_msg(), "seed": 3, "execute": True}, now=1.0)
    assert resp["success"], resp["message"]
    assert publish == resp["chunks"] and resp["latency"] > 0
    assert resp["cost"] == pytest.approx(sum(t["values"][0] for t in resp["cost_terms"]), rel=1e-5)
    chunks = [parse_chunk(c)[2].actions for c in resp["chunks"]]
    assert all(c.shape == (H, 7) and np.all(np.isfinite(c)) for c in chunks)
    again, _ = coord.handle_plan({"state": state_msg(), "seed": 3}, now=2.0)
    np.testing.assert_allclose([parse_chunk(c)[2].actions for c in again["chunks"]], chunks)   # seeded
    bad, _ = coord.handle_plan({"state": state_msg(), "num_samples": 1}, now=3.0)
    assert not bad["success"] and bad["message"].startswith("num_samples")    # the planner's own check


def test_the_planned_tool_paths_for_rviz_follow_each_chunk_from_its_tool_and_a_stop_deletes_them():
    """/codi/planned_paths: per arm a line through the tool positions its chunk plans (0.05 m/s along the base
    x axis for H steps from where its state has the tool, in the world frame), shown while the chunk lasts;
    a stop deletes them."""
    coord = Coordinator(WORLD, FakePlanner())
    coord.start()
    observe(coord, 1.0)
    markers = coord.planned_paths(coord.tick(1.0))
    assert [m["id"] for m in markers] == [0, 1] and {m["header"]["frame_id"] for m in markers} == {"world"}
    for arm, marker in zip(WORLD.arm_names, markers, strict=True):
        points = np.array([[p["x"], p["y"], p["z"]] for p in marker["points"]])
        tool = np.array([WORLD.arm(arm).base_xy[0] * 0.5, 0.0, 0.3])          # observe()'s tool position
        np.testing.assert_allclose(points[0], tool)
        np.testing.assert_allclose(points[-1], tool + WORLD.base_frame(arm).vec_to_world([0.05 * H * DT, 0, 0]))
        assert len(points) == H + 1 and marker["action"] == 0
        assert marker["lifetime"]["sec"] + 1e-9 * marker["lifetime"]["nanosec"] == pytest.approx(H * DT)
    assert [m["action"] for m in coord.planned_paths(coord.stop(2.0))] == [2, 2]      # DELETE
