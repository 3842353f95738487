"""The handover's end (codi_ros/completion.py): the same rule ends a codi eval episode and stops the coordinator."""

import numpy as np
import pytest

from codi_ros.completion import Completion
from codi_ros.config import load_world_config
from codi_ros.frames import ArmState, CubeState, WorldState

WORLD = load_world_config()
GOAL = np.array(WORLD.goal_centre())


def state(cube_offset: float, width: float = 0.08, tool_on_cube: bool = True) -> WorldState:
    cube = GOAL + [cube_offset, 0.0, 0.0]
    tool = cube if tool_on_cube else cube + [0.0, 0.0, 0.3]
    arms = {a: ArmState(tool.copy() if a == "right" else np.array([-0.4, 0.0, 0.5]), np.eye(3), np.zeros(3),
                        np.zeros(3), width if a == "right" else 0.08) for a in WORLD.arm_names}
    return WorldState(arms=arms, cube=CubeState(cube, np.array([1.0, 0, 0, 0])), goal=GOAL)


def run(states: list[WorldState], dt: float = 0.1) -> list[bool]:
    completion = Completion(WORLD)
    return [completion.update(s, k * dt) for k, s in enumerate(states)]


def test_a_released_cube_resting_at_the_goal_completes_after_the_settle_time():
    settle = int(round(WORLD.goal.settle_seconds / 0.1))
    done = run([state(0.02)] * (settle + 2))
    assert done.index(True) == settle and all(done[settle:])


@pytest.mark.parametrize("why, s", [
    ("still held", state(0.02, width=0.046)),
    ("outside the tolerance", state(WORLD.goal.tolerance + 0.01)),
])
def test_no_completion_while_the_cube_is_held_or_away_from_the_goal(why, s):
    assert not any(run([s] * 30)), why


def test_a_closed_gripper_away_from_the_cube_does_not_count_as_holding_it():
    assert any(run([state(0.02, width=0.0, tool_on_cube=False)] * 30))


def test_leaving_the_goal_restarts_the_settle_time_and_reset_forgets_it():
    settle = int(round(WORLD.goal.settle_seconds / 0.1))
    states = [state(0.02)] * (settle - 1) + [state(0.5)] + [state(0.02)] * settle
    assert not any(run(states))
    completion = Completion(WORLD)
    completion.update(state(0.02), 0.0)
    completion.reset()
    assert not completion.update(state(0.02), WORLD.goal.settle_seconds)
