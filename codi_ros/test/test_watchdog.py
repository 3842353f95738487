"""The nodes' staleness watchdog, log-once filter and rate grid (ROS-free classes, no rclpy)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from logic_fakes import WORLD, FakePlanner, observe

from codi_ros.paths import config_dir
from codi_ros.ros.coordinator import Coordinator
from codi_ros.ros.watchdog import LogOnce, RateGrid, StateMonitor


def test_inputs_stamped_in_the_future_are_refused_not_kept_fresh_forever():
    """A state or detection stamped beyond the timeout ahead of now (a wrong clock, a fuzzed stamp) would never
    go stale: the monitor and the cube fusion refuse it."""
    m = StateMonitor({"arm": 0.2})
    m.update("arm", 5.0)
    assert m.problems(1.0) == {"arm": "arm is stamped 4.00 s in the future (limit 0.20 s)"}
    assert m.problems(4.9) == {}                                       # within the timeout of now: fine
    coord = Coordinator(WORLD, FakePlanner())
    observe(coord, 1.0, cube_t=4e9)
    resp, _ = coord.handle_plan({}, now=1.05)
    assert not resp["success"] and "in the future" in resp["message"], resp["message"]


def test_state_monitor_reports_missing_stale_and_nan_inputs():
    m = StateMonitor({"arm": 0.2, "cube": 1.0})
    assert set(m.problems(0.0)) == {"arm", "cube"} and "no arm received" in m.problems(0.0)["arm"]
    m.update("arm", 10.0)
    m.update("cube", 10.0)
    assert m.problems(10.15) == {}
    assert set(m.problems(10.25)) == {"arm"} and "0.25 s old (limit 0.20 s)" in m.problems(10.25)["arm"]
    assert set(m.problems(11.05)) == {"arm", "cube"}
    m.update("cube", 11.0, finite=False)
    assert "NaN" in m.problems(11.05)["cube"]


def test_log_once_reports_a_fault_once_and_its_recovery_once():
    log = LogOnce()
    lines = []
    for k in range(50):                                    # a stale input for 50 cycles, its age growing
        lines += log.update({"arm": f"arm state is {0.2 + 0.01 * k:.2f} s old"})
    assert lines == [("warn", "arm state is 0.20 s old")]
    assert log.update({}) == [("info", "recovered: arm state is 0.20 s old")] and log.update({}) == []
    assert log.update({"arm": "again"}) == [("warn", "again")]


def test_rate_grids_thin_a_jittery_stream_to_the_same_instants():
    """arm_state_node and the simulator's true cube pose thin the same 100 Hz joint-state stamps to 25 Hz
    independently: they pass the same stamps, one per 40 ms slot, so the planner sees cube and arms at one
    time. A lost message moves one grid to the next stamp of that slot only."""
    stamps = 1000.0 + np.arange(400) * 0.01 + np.random.default_rng(0).uniform(0, 0.004, 400)
    arms, cube = RateGrid(25.0), RateGrid(25.0)
    picked = [t for t in stamps if arms.due(t)]
    assert picked == [t for t in stamps if cube.due(t)]
    assert len(picked) == 100 and np.all(np.abs(np.diff(picked) - 0.04) < 0.005)
    lossy = RateGrid(25.0)                                       # loses the first stamp of slot 2
    thinned = [t for t in np.delete(stamps, 8) if lossy.due(t)]
    assert thinned[2] == stamps[9] and thinned[:2] == picked[:2] and thinned[3:] == picked[3:]
    with pytest.raises(ValueError, match="rate_hz"):
        RateGrid(0.0)


def test_simulated_graph_publishes_the_true_cube_pose_at_the_arm_state_rate():

    params = yaml.safe_load((config_dir() / "ros.yaml").read_text())
    cube_rate = params["/sim_node"]["ros__parameters"]["cube_pose_rate_hz"]
    assert [params[f"/{a}/arm_state_node"]["ros__parameters"]["publish_rate_hz"] for a in WORLD.arm_names] \
        == [cube_rate] * len(WORLD.arm_names)
