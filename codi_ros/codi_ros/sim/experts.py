"""Scripted experts (paper Sec. VI "Demonstration Data") acting through the policy's action space.

A :class:`PickPlace` skill grasps the cube top-down and places it at a target; a :class:`Yield`
skill returns the arm home and holds it there, leaving room for another arm. Both emit one action
(7,) per control step in the arm's base frame -- exactly what the diffusion policy learns to output.
:class:`HandoverExpert` composes them for two arms (used only by the multi-agent baselines).
"""

from __future__ import annotations

import enum

import numpy as np

from codi_ros.frames import ACT_DIM, quat_to_mat, rot_z, rotation_error, tool_down, yaw_of
from codi_ros.sim.world import TwoArmWorld

KP_POS = 4.0           # 1/s, proportional gain on the position error
KP_ROT = 4.0           # 1/s, on the orientation error
CARRY_HEIGHT = 0.15    # tool height while moving above the table
ABOVE_CUBE = 0.10      # pre-grasp height above the cube centre
POS_TOL = 0.008
ROT_TOL = 0.05
OPEN, CLOSED = 0.08, 0.0
RELEASE = 0.07         # width when letting go of the cube and retreating from it; OPEN again at home. With OPEN
                       # there, the tool just after a release (at the cube, gripper open, cube_rel ~ 0) looked like
                       # the tool just before a grasp: a policy hovering over the cube took the retreat (straight
                       # up, then home) and never closed; the width in the observation tells the two apart
HOLD_TOL = 0.03        # cube centre further than this from the tool while lifting/carrying = missed or dropped
GRASP_STEPS = 6        # control steps to close the gripper (0.6 s)
RELEASE_STEPS = 4
PHASE_TIMEOUT_S = 6.0


def grasp_yaw(cube_yaw: float, preferred: float) -> float:
    """The cube's yaw plus k*90 deg closest to ``preferred`` (a cube looks the same every 90 deg)."""
    k = np.round((preferred - cube_yaw) / (np.pi / 2))
    return float(cube_yaw + k * np.pi / 2)


class Phase(enum.Enum):
    APPROACH = "approach"   # above the cube, gripper open
    DESCEND = "descend"
    CLOSE = "close"
    LIFT = "lift"
    CARRY = "carry"         # above the place target
    LOWER = "lower"
    RELEASE = "release"
    RETREAT = "retreat"
    HOME = "home"           # go home and hold (also the whole Yield skill)


class Skill:
    """Pose servo shared by the skills: target tool pose + gripper width -> base-frame action."""

    def __init__(self, world: TwoArmWorld, arm: str):
        self.world, self.arm, self.cfg = world, arm, world.cfg
        self.phase = Phase.HOME
        self._phase_steps = 0

    def _goto(self, phase: Phase) -> None:
        self.phase, self._phase_steps = phase, 0

    def _servo(self, pos: np.ndarray, rot: np.ndarray, width: float) -> tuple[np.ndarray, bool]:
        st = self.world.arm_state(self.arm)
        e_pos, e_rot = pos - st.ee_pos, rotation_error(rot, st.ee_rot)
        v, w = KP_POS * e_pos, KP_ROT * e_rot
        c = self.cfg.control
        v *= min(1.0, c.max_linear_speed / max(np.linalg.norm(v), 1e-9))
        w *= min(1.0, c.max_angular_speed / max(np.linalg.norm(w), 1e-9))
        R = rot_z(self.cfg.arm(self.arm).base_yaw)
        action = np.concatenate([R.T @ v, R.T @ w, [width]])
        return action, bool(np.linalg.norm(e_pos) < POS_TOL and np.linalg.norm(e_rot) < ROT_TOL)

    def _home(self) -> tuple[np.ndarray, bool]:
        pos, rot = self.world.home_tcp[self.arm]
        return self._servo(pos, rot, OPEN)

    @property
    def done(self) -> bool:
        return self.phase is Phase.HOME

    def act(self) -> np.ndarray:
        raise NotImplementedError


class Yield(Skill):
    """Return home and stay there, gripper open (the 'yield' demonstrations)."""

    def act(self) -> np.ndarray:
        return self._home()[0]


class PickPlace(Skill):
    """Grasp the cube top-down, place it at ``place_xy``, retreat and go home."""

    def __init__(self, world: TwoArmWorld, arm: str, place_xy: tuple[float, float]):
        super().__init__(world, arm)
        self.place_xy = np.asarray(place_xy, dtype=float)
        self.placed = False
        self._goto(Phase.APPROACH)

    def restart(self) -> None:
        """Start over from the approach (after the cube was moved, or a missed grasp)."""
        self.placed = False
        self._goto(Phase.APPROACH)

    def act(self) -> np.ndarray:
        cube = self.world.cube_state()
        st = self.world.arm_state(self.arm)
        half = self.cfg.cube.size / 2
        tool_yaw = yaw_of(st.ee_rot)
        rot = tool_down(grasp_yaw(yaw_of(quat_to_mat(cube.quat)), tool_yaw))   # the least wrist turn
        hold_rot = tool_down(tool_yaw)
        dropped = np.linalg.norm(cube.pos - st.ee_pos) > HOLD_TOL
        self._phase_steps += 1
        if self._phase_steps > PHASE_TIMEOUT_S * self.cfg.control.rate_hz and self.phase is not Phase.HOME:
            self.restart()                                              # stuck: start over
        p = self.phase
        if p is Phase.APPROACH:
            action, reached = self._servo(np.r_[cube.pos[:2], cube.pos[2] + ABOVE_CUBE], rot, OPEN)
            if reached:
                self._goto(Phase.DESCEND)
        elif p is Phase.DESCEND:
            action, reached = self._servo(cube.pos, rot, OPEN)
            if reached:
                self._goto(Phase.CLOSE)
        elif p is Phase.CLOSE:
            action = idle_action(CLOSED)
            if self._phase_steps >= GRASP_STEPS:
                self._goto(Phase.LIFT)
        elif p is Phase.LIFT:
            action, reached = self._servo(np.r_[st.ee_pos[:2], CARRY_HEIGHT], hold_rot, CLOSED)
            if dropped:
                self.restart()                                          # missed or dropped: re-grasp
            elif reached:
                self._goto(Phase.CARRY)
        elif p is Phase.CARRY:
            action, reached = self._servo(np.r_[self.place_xy, CARRY_HEIGHT], hold_rot, CLOSED)
            if dropped:
                self.restart()
            elif reached:
                self._goto(Phase.LOWER)
        elif p is Phase.LOWER:
            action, reached = self._servo(np.r_[self.place_xy, half + 0.004], hold_rot, CLOSED)
            if reached:
                self._goto(Phase.RELEASE)
        elif p is Phase.RELEASE:
            action = idle_action(RELEASE)
            if self._phase_steps >= RELEASE_STEPS:
                self.placed = True
                self._goto(Phase.RETREAT)
        elif p is Phase.RETREAT:
            action, reached = self._servo(np.r_[st.ee_pos[:2], CARRY_HEIGHT], hold_rot, RELEASE)
            if reached or st.ee_pos[2] > CARRY_HEIGHT - 0.02:
                self._goto(Phase.HOME)
        else:
            action, _ = self._home()
        return action


def idle_action(width: float = OPEN) -> np.ndarray:
    a = np.zeros(ACT_DIM)
    a[6] = width
    return a


class HandoverExpert:
    """Two-arm scripted expert for the multi-agent baselines (paper Sec. VII-A).

    If both arms reach the cube one is chosen at random; it places the cube at the goal if it can
    reach it, else at a handover point in the shared strip and goes home, after which the other arm
    picks it up from there and places it at the goal. The idle arm yields.
    """

    def __init__(self, world: TwoArmWorld, rng: np.random.Generator):
        self.world, self.cfg, self.rng = world, world.cfg, rng
        cube_xy = tuple(world.cube_state().pos[:2])
        goal_xy = tuple(world.goal[:2])
        reach = [a for a in self.cfg.arm_names if self.cfg.reachable(a, cube_xy)]
        if not reach:
            raise ValueError(f"cube at {cube_xy} is out of every arm's reach")
        first = str(rng.choice(reach))
        self.stages: list[tuple[str, tuple[float, float]]] = []
        if self.cfg.reachable(first, goal_xy):
            self.stages.append((first, goal_xy))
        else:
            strip = self.cfg.handover_strip
            handover = (float(np.mean(strip.x_range)), float(np.clip(cube_xy[1], *strip.y_range)))
            second = next(a for a in self.cfg.arm_names if a != first and self.cfg.reachable(a, goal_xy))
            self.stages += [(first, handover), (second, goal_xy)]
        self.stage = 0
        self.skills: dict[str, Skill] = {a: Yield(world, a) for a in self.cfg.arm_names}
        self.skills[first] = PickPlace(world, first, self.stages[0][1])

    @property
    def done(self) -> bool:
        return self.stage == len(self.stages) - 1 and self.skills[self.stages[-1][0]].done

    def act(self) -> dict[str, np.ndarray]:
        arm, _ = self.stages[self.stage]
        skill = self.skills[arm]
        if self.stage + 1 < len(self.stages) and isinstance(skill, PickPlace) and skill.placed:
            nxt, place = self.stages[self.stage + 1]
            # hand over once the first arm has left the strip (keeps the end effectors apart)
            handover = np.r_[self.stages[self.stage][1], 0.0]
            if np.linalg.norm(self.world.arm_state(arm).ee_pos[:2] - handover[:2]) > 0.35:
                self.stage += 1
                self.skills[nxt] = PickPlace(self.world, nxt, place)
        return {a: s.act() for a, s in self.skills.items()}
