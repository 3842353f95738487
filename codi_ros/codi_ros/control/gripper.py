"""The Franka hand takes blocking goals, not a streamed width: :class:`GripperCommander` turns the width the
executor commands into franka_gripper goals, in the simulated graph as on the arms.

franka_gripper's Move (width, speed) and Grasp (width, epsilon, speed, force) actions each run to their end,
so (settings: ``gripper`` in world.yaml):

- hysteresis: a commanded width below ``close_below`` asks for a grasp of the cube (``cube.size`` within
  ``epsilon``, ``force``), one above ``open_above`` for a move to that width (at most
  ``control.gripper_max_width``), renewed when the width moves by ``move_step``; in between the last wish
  stands. The demonstrations command 0 closed, 0.08 m open and 0.07 m just after a release, a width the
  policy reads back to tell a release from a grasp about to close: the hand goes there, not fully open;
- one goal at a time: a wish that changes while a goal runs is sent when that goal ends (the newest only);
- a goal that has not ended within ``timeout`` has failed: reported, and the wish is sent again;
- a grasp that fails (franka_gripper: the fingers stopped outside cube.size +- epsilon, e.g. closed on nothing)
  is reported, and the hand reopens (a move to ``control.gripper_max_width``): the next grasp waits until the
  commanded width asks for an open hand first. A closed hand beside the cube is a state no demonstration
  shows (their expert reopens and approaches again): in the graph the policy went on commanding closed for
  7-25 s and the episode failed; with the hand open it approaches and grasps again, as demonstrated;
- so does a grasp that held and then lost the cube: the fingers, measured (:meth:`GripperCommander.command`),
  closed further than cube.size - epsilon (the grasp goal had succeeded; franka_gripper reports no slip).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from codi_ros.config import WorldConfig


@dataclass(frozen=True)
class GripperGoal:
    """One franka_gripper goal: ``action`` "move" (width, speed) or "grasp" (all fields); ``seq`` numbers the
    goals sent, so that a late result of an abandoned goal is recognised."""

    action: Literal["move", "grasp"]
    width: float      # m
    speed: float      # m/s
    force: float = 0.0     # N (grasp)
    epsilon: float = 0.0   # m (grasp: inner and outer)
    seq: int = 0


class GripperCommander:
    def __init__(self, world: WorldConfig):
        g = world.gripper
        self.cfg, self.max_width = g, world.control.gripper_max_width
        self.grasp = GripperGoal("grasp", world.cube.size, g.speed, g.force, g.epsilon)
        self.wanted: GripperGoal | None = None    # a move (open) or the grasp, from the commanded widths (seq 0)
        self.done: GripperGoal | None = None      # the last goal that ended (seq 0), None: unknown
        self.running: tuple[GripperGoal, float] | None = None   # the goal sent and when
        self._seq = 0
        self._armed = True                        # a grasp wish counts (False after a failed grasp, until an open)
        self._lines: list[tuple[str, str]] = []

    def command(self, width: float | None, now: float, measured: float = math.nan) -> GripperGoal | None:
        """The width commanded now (None or NaN: none yet) and the fingers' measured width (NaN: unknown); the
        goal to send now, if any (call it often: a goal running past its timeout is given up here, a grasp
        that held the cube and lost it reopens here)."""
        held = self.running is None and self.wanted == self.grasp and self.done == self.grasp
        if held and math.isfinite(measured) and measured < self.grasp.width - self.grasp.epsilon:
            self._lines.append(("warn", f"gripper: the fingers closed to {measured:.3f} m after the grasp: the cube "
                                        "slipped out; reopening (the next grasp waits for an open command)"))
            self._reopen()
        if width is not None and math.isfinite(width):
            wish = self.cfg.wish(width)
            if wish == "grasp" and self._armed:
                self.wanted = self.grasp
            elif wish == "open":
                self._armed = True
                width = min(width, self.max_width)
                if (self.wanted is None or self.wanted.action != "move"
                        or abs(width - self.wanted.width) >= self.cfg.move_step):
                    self.wanted = GripperGoal("move", width, self.cfg.speed)
        if self.running is not None and now - self.running[1] > self.cfg.timeout:
            goal, _ = self.running
            self._lines.append(("warn", f"gripper {goal.action} to {goal.width:.3f} m did not finish within "
                                        f"{self.cfg.timeout:g} s: giving it up"))
            self.running, self.done = None, None
        return self._next(now)

    def _reopen(self) -> None:
        self.wanted, self._armed = GripperGoal("move", self.max_width, self.cfg.speed), False

    def finished(self, seq: int, success: bool, error: str, now: float) -> GripperGoal | None:
        """Goal ``seq`` ended (its result); the goal to send now, if any."""
        if self.running is None or self.running[0].seq != seq:
            return None                           # abandoned after a timeout: its result no longer counts
        goal, _ = self.running
        self.running, self.done = None, dataclasses.replace(goal, seq=0)
        if not success:
            self._lines.append(("warn", f"gripper {goal.action} to {goal.width:.3f} m failed: {error or 'no reason'}"
                                        + ("; reopening (the next grasp waits for an open command)"
                                           if goal.action == "grasp" else "")))
        if not success and goal.action == "grasp":
            self._reopen()
        return self._next(now)

    def _next(self, now: float) -> GripperGoal | None:
        if self.running is not None or self.wanted is None or self.wanted == self.done:
            return None
        self._seq += 1
        goal = dataclasses.replace(self.wanted, seq=self._seq)
        self.running = (goal, now)
        return goal

    def pop_log(self) -> list[tuple[str, str]]:
        lines, self._lines = self._lines, []
        return lines
