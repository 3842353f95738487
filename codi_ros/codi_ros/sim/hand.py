"""The simulated Franka hand and its in-process client: one gripper path for every driver of the world.

franka_gripper's Move and Grasp goals run to their end on :class:`SimulatedHand`. The widths an arm's executor
commands become such goals through :class:`~codi_ros.control.gripper.GripperCommander` (hysteresis, one goal
at a time, timeouts) both in-process (:class:`HandClient`: ``codi eval``, ``codi demo``, the data generator)
and in the simulated graph, where the action node's commander sends them as franka_gripper actions to the
simulator node, which starts them on this same hand. The hand's clock is the world's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from codi_ros.control.executor import Events
from codi_ros.control.gripper import GripperCommander, GripperGoal

if TYPE_CHECKING:
    from codi_ros.sim.world import TwoArmWorld

HAND_SETTLE_S = 0.05      # the fingers count as stopped when the width changed less than HAND_STILL_M in this long
HAND_STILL_M = 2e-4
MOVE_TOLERANCE_M = 0.005  # a move succeeds when the fingers stop this close to its width

Done = Callable[[bool, str, float], None]   # (success, error, width): a goal's result


@dataclass
class _HandGoal:
    action: str
    width: float                  # the goal's width (grasp: the object's)
    epsilon: float
    done: Done
    still_since: float
    last_width: float


class SimulatedHand:
    """franka_gripper's actions on one simulated Franka hand. A move drives the fingers to its width, a grasp
    closes them on whatever is between (the hand's position servo squeezes to its force limit; the goal's
    speed and force are not modelled); a goal ends when the fingers stop. A grasp succeeds when they stop at
    its width +- epsilon (franka_gripper's rule), so closing on nothing fails. A new goal aborts the running
    one, as does an episode reset. The world updates its hands every IK period."""

    def __init__(self, world: TwoArmWorld, arm: str):
        self.world, self.arm = world, arm
        self._goal: _HandGoal | None = None

    def start(self, action: str, width: float, epsilon: float, done: Done) -> None:
        if action not in ("move", "grasp"):
            raise ValueError(f"action: 'move' or 'grasp', got {action!r}")
        self.abort("preempted by a new goal")
        w = self.world.gripper_width(self.arm)
        self._goal = _HandGoal(action, float(width), float(epsilon), done, self.world.time, w)
        self.world.set_gripper(self.arm, 0.0 if action == "grasp" else float(width))

    def abort(self, reason: str) -> None:
        if self._goal is not None:
            goal, self._goal = self._goal, None
            goal.done(False, reason, self.world.gripper_width(self.arm))

    def update(self) -> None:
        """End the running goal once the fingers have stopped."""
        goal, now = self._goal, self.world.time
        if goal is None:
            return
        w = self.world.gripper_width(self.arm)
        if abs(w - goal.last_width) > HAND_STILL_M:
            goal.still_since, goal.last_width = now, w
        if now - goal.still_since < HAND_SETTLE_S:
            return
        self._goal = None
        if goal.action == "move":
            ok = abs(w - goal.width) <= MOVE_TOLERANCE_M
            goal.done(ok, "" if ok else f"blocked at width {w:.3f} m (goal {goal.width:.3f} m)", w)
        else:
            ok = abs(w - goal.width) <= goal.epsilon
            goal.done(ok, "" if ok else f"the fingers stopped at {w:.3f} m, not {goal.width:.3f} +- "
                                        f"{goal.epsilon:.3f} m: nothing grasped", w)


class HandClient:
    """The action node's franka_gripper client without ROS: the widths an executor commands, through the same
    :class:`GripperCommander`, to the arm's :class:`SimulatedHand`, and the goals' results back."""

    def __init__(self, hand: SimulatedHand):
        self.hand = hand
        self.commander = GripperCommander(hand.world.cfg)

    def command(self, width: float) -> None:
        world = self.hand.world
        self._send(self.commander.command(width, world.time, world.gripper_width(self.hand.arm)))

    def _send(self, goal: GripperGoal | None) -> None:
        if goal is not None:
            self.hand.start(goal.action, goal.width, goal.epsilon, lambda ok, error, _w, seq=goal.seq:
                            self._send(self.commander.finished(seq, ok, error, self.hand.world.time)))

    def reset(self) -> None:
        """A new episode: no wish yet; the hand's running goal is aborted (its result, to the new commander,
        no longer counts)."""
        self.commander = GripperCommander(self.hand.world.cfg)
        self.hand.abort("episode reset")

    def pop_log(self) -> Events:
        return self.commander.pop_log()
