"""The one executor from plan to joints: a time-stamped twist chunk -> joint position and velocity setpoints.

``codi eval``, ``codi demo``, the data generator, the physics cost simulator (through
:class:`codi_ros.sim.world.TwoArmWorld`) and the ROS action nodes all run an :class:`ArmExecutor`
at the IK rate (``control.ik_rate_hz``), with the settings of ``world.yaml`` (``executor``,
``workspace``, ``control``). Per cycle:

    chunk (ChunkExecutor: the action due now) -> workspace box -> damped least-squares IK at the
          commanded joints -> joint velocity, acceleration and jerk limits (JointCommandLimiter)
          -> qdot, integrated into the commanded joint positions q

The world steps it in lockstep with its physics; an action node runs it ahead once per plan
(:meth:`ArmExecutor.trajectory`) and sends the setpoints as a joint trajectory
(:mod:`codi_ros.control.trajectory`): the same setpoints either way.

Timing (receding horizon, paper Sec. V; real-time chunking, Black et al. 2025). Action k of a
chunk holds over [start + k dt, start + (k+1) dt) (zero-order hold, as in training); actions are
executed by their time stamp, never late by index. A chunk takes over in one of two ways:

- ``committed == 0`` (naive): on arrival, at the action that is due by then; the actions its
  planning latency used up are skipped.
- ``committed == d > 0`` (latency-aware): its first d actions repeat the actions the arm executes
  while the plan is computed (the planner froze them, :mod:`codi_ros.core.planner`), so the chunk
  takes over at ``start + d dt``, exactly at its first new action, and committed actions are never
  replaced. A chunk that arrives later than that (plus ``late_tolerance``) is dropped with a
  warning: the arm finishes the chunk it has, then holds. (An arm that holds, executing nothing,
  takes a late chunk like a naive one: it did hold still through the committed steps.)

When the chunk runs out with no newer one, on stop, or on stale or NaN joint states, the arm holds:
every joint ramps to zero within ``stop_time`` and stays there.

:meth:`ArmExecutor.predict` runs a copy of an executor ahead (the latency-aware planner's view of
where the tool will be when its plan takes over): the committed actions through the same IK and
limits, the joints following the commands with the arm's tracking lag, so the prediction has the
lag of the limits and of the arm.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from codi_ros.config import WorldConfig
from codi_ros.control.ik import DifferentialIK
from codi_ros.control.kinematics import arm_state_from_joints
from codi_ros.control.trajectory import JointTrajectory
from codi_ros.control.workspace import WorkspaceBounds
from codi_ros.frames import ACT_DIM, ArmState

MAX_TARGET_LEAD = 0.2   # rad: commanded joint positions never run further ahead of the measured joints
MAX_CHUNK_AHEAD_S = 10.0  # s: a chunk must end within this of its arrival (a plan spans ~1.6 s; a wrong dt or
                          # stamp would otherwise make a trajectory of millions of points)
MAX_CATCH_UP_S = MAX_CHUNK_AHEAD_S + 5.0   # s: ArmExecutor.advance_to() re-runs at most this much (a trajectory
                                           # is shorter: its chunk and a stop)
Events = list[tuple[str, str]]   # (level "warn" | "info", text) lines worth logging once each


class ChunkError(ValueError):
    """A malformed action chunk; the message names the field."""


@dataclass(frozen=True)
class Chunk:
    """N actions (N, 7) of one arm in its base frame: ee linear vel (3), angular vel (3), gripper width.

    ``start``: time of action 0; ``committed``: how many leading actions repeat what the arm already
    executes (0: none, take over on arrival)."""

    start: float
    dt: float
    actions: np.ndarray
    committed: int = 0

    def __post_init__(self) -> None:
        a = np.asarray(self.actions, dtype=float)
        if a.ndim != 2 or a.shape[1] != ACT_DIM:
            raise ChunkError(f"actions: expected shape (N, {ACT_DIM}), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ChunkError("actions: NaN or inf")
        if not (math.isfinite(self.dt) and self.dt > 0):
            raise ChunkError(f"dt: must be a positive number of seconds, got {self.dt}")
        if not math.isfinite(self.start):
            raise ChunkError(f"start: not a finite time, got {self.start}")
        if not 0 <= self.committed < max(len(a), 1):
            raise ChunkError(f"committed: must be in [0, {len(a)}) for {len(a)} actions, got {self.committed}")
        object.__setattr__(self, "actions", a)

    @property
    def end(self) -> float:
        return self.start + len(self.actions) * self.dt

    @property
    def takeover(self) -> float:
        """When its first new (not committed) action is due."""
        return self.start + self.committed * self.dt

    def index_at(self, t: float) -> int:
        """Index of the action due at time t (0 before the start; callers check ``end``)."""
        return min(max(math.floor((t - self.start) / self.dt + 1e-9), 0), len(self.actions) - 1)

    def action_at(self, t: float) -> np.ndarray:
        return self.actions[self.index_at(t)]

    def remaining(self, t: float, steps: int) -> np.ndarray:
        """The ``steps`` actions due from time t on (the last one repeated past the end): what an arm
        executing this chunk commits to while a plan started at t is computed."""
        k = self.index_at(t)
        idx = np.minimum(np.arange(k, k + steps), len(self.actions) - 1)
        return self.actions[idx]


@dataclass(frozen=True)
class Command:
    twist: np.ndarray            # (6,) commanded ee twist, base frame (zero while holding)
    gripper_width: float | None  # None until a chunk has given one; kept while holding
    hold: bool                   # no chunk to execute: bring the arm to rest and keep it there


class ChunkExecutor:
    """Which twist and gripper width to command now, from the chunks received so far."""

    def __init__(self, blend_time: float = 0.0, late_tolerance: float = 0.02):
        if not (blend_time >= 0 and late_tolerance >= 0):
            raise ValueError(f"blend_time and late_tolerance must be >= 0, got {blend_time}, {late_tolerance}")
        self.blend_time, self.late_tolerance = blend_time, late_tolerance
        self._chunk: Chunk | None = None
        self._pending: Chunk | None = None        # a latency-aware chunk waiting for its takeover time
        self._last_twist = np.zeros(6)
        self._blend_from = np.zeros(6)
        self._blend_start = -math.inf
        self._gripper: float | None = None
        self._stopped_at = -math.inf
        self.switched_at = -math.inf              # when the current chunk took over (a join)
        self.events: Events = []

    @property
    def chunk(self) -> Chunk | None:
        """The chunk being executed (None while holding)."""
        return self._chunk

    @property
    def pending(self) -> Chunk | None:
        """A latency-aware chunk waiting for its takeover time."""
        return self._pending

    @property
    def idle(self) -> bool:
        """No chunk to execute, none waiting."""
        return self._chunk is None and self._pending is None

    @property
    def gripper(self) -> float | None:
        """The gripper width commanded last (None before any chunk)."""
        return self._gripper

    def accept(self, chunk: Chunk, now: float) -> bool:
        """Take a new chunk (True), or reject it with a logged reason (False). No actions means stop
        (as of the chunk's stamp: chunks are compared in the planner's clock)."""
        if len(chunk.actions) == 0:
            self.stop(chunk.start)
            return True
        reason = None
        if chunk.end <= now:
            reason = f"rejected a chunk that ended {now - chunk.end:.2f} s ago (late delivery?)"
        elif chunk.committed and self._chunk is not None and now > chunk.takeover + self.late_tolerance:
            reason = (f"dropped a late plan: it arrived {now - chunk.takeover:.3f} s after its first new action was "
                      f"due ({chunk.committed} committed steps were planned for); finishing the current chunk")
        elif chunk.end > now + MAX_CHUNK_AHEAD_S:
            reason = (f"rejected a chunk that ends {chunk.end - now:.3g} s from now (more than "
                      f"{MAX_CHUNK_AHEAD_S:g} s: a wrong dt or start stamp?)")
        elif chunk.start < self._stopped_at:
            reason = "rejected a chunk planned before the last stop"
        elif self._chunk is not None and chunk.start < self._chunk.start:
            reason = "rejected a chunk older than the one being executed"
        if reason is not None:
            self.events.append(("warn", reason))
            return False
        if chunk.committed and now < chunk.takeover and self._chunk is not None:
            self._pending = chunk
        else:
            self._switch(chunk, now)
        return True

    def _switch(self, chunk: Chunk, now: float) -> None:
        self._chunk, self._pending = chunk, None
        self._blend_from, self._blend_start = self._last_twist.copy(), now
        self.switched_at = now

    def upcoming(self, t: float, steps: int) -> np.ndarray | None:
        """The ``steps`` actions this executor will run from time t on if no other chunk arrives (a
        waiting chunk taking over on time included; the last action repeated past a chunk's end), or
        None while holding: what a plan started at t must treat as committed."""
        chunk = self._chunk if self._pending is None or t < self._pending.takeover - 1e-9 else self._pending
        if chunk is None or t >= chunk.end:
            return None
        actions = chunk.remaining(t, steps)
        if self._pending is not None and chunk is self._chunk:
            times = t + np.arange(steps) * chunk.dt
            later = times >= self._pending.takeover - 1e-9
            if later.any():
                actions[later] = [self._pending.action_at(x) for x in times[later]]
        return actions

    def commitment(self, t: float, steps: int, gripper_width: float) -> np.ndarray:
        """The ``steps`` actions a plan started at t must treat as committed: :meth:`upcoming`, or standing
        still at ``gripper_width`` while holding."""
        upcoming = self.upcoming(t, steps)
        return upcoming if upcoming is not None else np.tile(np.r_[np.zeros(6), gripper_width], (steps, 1))

    def stop(self, t: float) -> None:
        """Drop the current chunk and hold until a chunk planned after time ``t`` arrives."""
        if self._chunk is not None:
            self.events.append(("info", "stop: holding"))
        self._chunk, self._pending, self._stopped_at = None, None, t

    def command(self, now: float) -> Command:
        if self._pending is not None and now >= self._pending.takeover - 1e-9:
            self._switch(self._pending, now)
        chunk = self._chunk
        if chunk is not None and now >= chunk.end:
            self.events.append(("warn", f"chunk ran out {now - chunk.end:.2f} s ago with no newer chunk "
                                        "(planning overrun or planner stopped): holding"))
            self._chunk = chunk = None
        if chunk is None:
            self._last_twist = np.zeros(6)
            return Command(self._last_twist, self._gripper, hold=True)
        action = chunk.action_at(now)
        alpha = 1.0 if self.blend_time == 0 else min(max((now - self._blend_start) / self.blend_time, 0.0), 1.0)
        self._last_twist = (1 - alpha) * self._blend_from + alpha * action[:6]
        self._gripper = float(action[6])
        return Command(self._last_twist, self._gripper, hold=False)


def _scale_into(delta: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Scale ``delta`` uniformly (direction kept) so that |delta_i| <= bound_i for every i."""
    ratio = np.max(np.abs(delta) / bound)
    return delta / ratio if ratio > 1.0 + 1e-9 else delta


class JointCommandLimiter:
    """Joint velocity commands within the velocity, acceleration and jerk limits (Franka arms abort on
    discontinuous commands).

    Each cycle of ``dt`` moves the command towards the desired velocity (scaled into the velocity
    limits, direction kept) with a constant acceleration over the cycle, as a controller interpolating
    the commands linearly at ``servo_hz`` sees it. The acceleration changes by at most jerk / servo_hz
    per cycle (so the jerk at ``servo_hz`` stays within the limit), and is eased off ahead of the target
    (|a| <= sqrt(J |dv| / dt): it lands with |a| <= J and stops accelerating in the next cycle) instead of
    overshooting. A hold (no
    chunk, stale or NaN state, stop) brings every joint to exactly zero, within the same limits: in about
    ``stop_time`` from up to ``acceleration_limit * stop_time``, later from faster (the limits win: beyond
    the FR3's it would abort with a reflex, which is no safer a stop)."""

    def __init__(self, velocity_limit, acceleration_limit, dt: float, stop_time: float = 0.1,
                 jerk_limit=None, servo_hz: float = 1000.0):
        self.v_max = np.asarray(velocity_limit, dtype=float)
        self.a_max = np.asarray(acceleration_limit, dtype=float)
        self.j_max = np.full_like(self.v_max, np.inf) if jerk_limit is None else np.asarray(jerk_limit, dtype=float)
        if not (self.v_max.shape == self.a_max.shape == self.j_max.shape) or np.any(self.v_max <= 0) \
                or np.any(self.a_max <= 0) or np.any(self.j_max <= 0):
            raise ValueError("velocity, acceleration and jerk limits must be positive, one per joint")
        if not (dt > 0 and stop_time >= dt and servo_hz * dt >= 1 - 1e-9):
            raise ValueError(f"need 0 < dt <= stop_time and servo_hz >= 1 / dt, got dt={dt}, stop_time={stop_time}, "
                             f"servo_hz={servo_hz}")
        self.dt, self.stop_time, self.servo_hz = dt, stop_time, servo_hz
        self.last = np.zeros_like(self.v_max)
        self.acc = np.zeros_like(self.v_max)          # acceleration of the last cycle

    def limit(self, qdot: np.ndarray, hold: bool = False, room: tuple[np.ndarray, np.ndarray] | None = None
              ) -> np.ndarray:
        """The joint velocity to command this cycle, given the desired one (ignored while holding). ``room``:
        each joint's distance (below, above) to its position limits; towards one a joint goes no faster than
        it can still stop in, at half the acceleration limit (so it brakes smoothly instead of being clipped
        at the limit, a jump the FR3 aborts on)."""
        qdot = np.asarray(qdot, dtype=float)
        if hold or qdot.shape != self.last.shape or not np.isfinite(qdot).all():
            target = np.zeros_like(self.last)
        else:
            target = _scale_into(qdot, self.v_max)
        if room is not None:   # v with v dt + v^2 / (2 b) <= room, b = a_max / 2
            b = self.a_max / 2
            below, above = np.sqrt((b * self.dt) ** 2 + 2 * b * np.maximum(room, 0.0)) - b * self.dt
            target = np.minimum(np.maximum(target, -below), above)   # np.clip's result, a few times faster
        a_max, jump = self.a_max, self.j_max / self.servo_hz
        gap = target - self.last
        ease = np.sqrt(np.minimum(jump, 1e12) * np.abs(gap) / self.dt)   # 1e12: no jerk limit
        wanted = np.sign(gap) * np.minimum(np.minimum(np.abs(gap) / self.dt, a_max), ease)
        acc = np.minimum(np.maximum(wanted, self.acc - jump), self.acc + jump)
        acc = np.minimum(np.maximum(acc, -a_max), a_max)
        landed = np.abs(gap - acc * self.dt) < 1e-9 * np.maximum(1.0, np.abs(target))
        new = np.where(landed, target, self.last + acc * self.dt)
        new = np.minimum(np.maximum(new, -self.v_max), self.v_max)
        self.acc, self.last = (new - self.last) / self.dt, new
        return new.copy()

    @property
    def longest_stop(self) -> float:
        """An upper bound on how long a hold takes to bring any velocity within the limits to rest, s."""
        return float(np.max(self.v_max / self.a_max) + 2 * np.max(self.a_max / self.j_max) + self.stop_time
                     + 2 * self.dt)

    def took(self, qdot: np.ndarray) -> None:
        """The velocity actually commanded this cycle was ``qdot`` (a position limit cut the last one short)."""
        qdot = np.asarray(qdot, dtype=float)
        self.acc, self.last = self.acc + (qdot - self.last) / self.dt, qdot.copy()

    def reset(self) -> None:
        self.last, self.acc = np.zeros_like(self.v_max), np.zeros_like(self.v_max)


class Kinematics(Protocol):
    """One arm's kinematics in its base frame (:class:`codi_ros.control.kinematics.ArmKinematics`)."""

    q_lower: np.ndarray
    q_upper: np.ndarray

    def forward_and_jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tool position (3,), orientation (3, 3) and (6, 7) Jacobian, base frame."""


class Setpoint(NamedTuple):
    """One IK period's command: joint positions and velocities (7,) and the gripper width (None before any
    chunk gave one)."""

    q: np.ndarray
    qdot: np.ndarray
    width: float | None


class ArmExecutor:
    """One arm: chunks in, joint setpoints out, once every ``1 / control.ik_rate_hz`` seconds.

    The executor integrates its own commanded joint positions (the position targets a trajectory
    controller or the simulated servos track) and runs the IK at the measured joints (closed loop: the
    tool moves as commanded from where it is; with the IK at the commanded joints instead, CoDi paused
    handed over 41/50 with 17 collision episodes against 43/50 with 11). Computed ahead
    (:meth:`trajectory`), the measured joints are predicted: they follow the commands with the arm's
    tracking lag, as in :meth:`predict`. A measurement also keeps the commanded positions within
    ``MAX_TARGET_LEAD`` of the arm (:meth:`sync`: an arm blocked by a contact does not wind them up)."""

    def __init__(self, world: WorldConfig, arm: str, kinematics: Kinematics):
        cfg, ex = world.control, world.executor
        self.arm, self.kinematics = arm, kinematics
        self.frame = world.base_frame(arm)
        self.dt = 1.0 / cfg.ik_rate_hz
        self.gripper_max = cfg.gripper_max_width
        self.tracking_time_constant = cfg.tracking_time_constant
        self.ik = DifferentialIK(cfg, np.array(world.home_qpos), kinematics.q_lower, kinematics.q_upper)
        self.chunks = ChunkExecutor(ex.blend_time, ex.late_tolerance)
        self.limiter = JointCommandLimiter(cfg.joint_velocity_limit, cfg.joint_acceleration_limit, dt=self.dt,
                                           stop_time=ex.stop_time, jerk_limit=cfg.joint_jerk_limit,
                                           servo_hz=cfg.servo_rate_hz)
        ws = world.workspace
        self.bounds = WorkspaceBounds(ws.lower, ws.upper, ws.lookahead)
        self.q_cmd: np.ndarray | None = None       # commanded joint positions (None until a measurement)
        self._next: float | None = None            # trajectory(): time of the first step not yet run
        self._ahead: list[np.ndarray] = []         # trajectory(): the predicted joints of its steps from _next
        self._rest: tuple[float, ArmExecutor] | None = None   # trajectory(): when it is at rest, and its state then
        self.trace: list[tuple[float, np.ndarray, float]] | None = None   # set to a list: (t, qdot, switched_at)

    def accept(self, chunk: Chunk, now: float) -> bool:
        return self.chunks.accept(chunk, now)

    def stop(self, t: float) -> None:
        self.chunks.stop(t)

    def reset(self) -> None:
        """Forget every chunk and command (a new episode)."""
        self.chunks = ChunkExecutor(self.chunks.blend_time, self.chunks.late_tolerance)
        self.limiter.reset()
        self.q_cmd, self._next, self._ahead, self._rest = None, None, [], None

    @property
    def at_rest(self) -> bool:
        """Nothing to execute and every joint commanded to zero."""
        return self.chunks.idle and not np.any(self.limiter.last)

    def sync(self, q: np.ndarray) -> bool:
        """Take measured joint positions: the first ones seed the commanded positions, later ones keep them
        within ``MAX_TARGET_LEAD``. False (nothing taken) for NaN or inf."""
        q = np.asarray(q, dtype=float)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            return False
        self.q_cmd = q.copy() if self.q_cmd is None else np.clip(self.q_cmd, q - MAX_TARGET_LEAD, q + MAX_TARGET_LEAD)
        return True

    def step(self, now: float, q: np.ndarray | None = None, hold: bool = False, measured: bool = True) -> Setpoint:
        """The setpoint for the IK period starting at ``now``. ``q``: measured joint positions, where the IK runs
        (:meth:`sync`; NaN: hold), predicted ones (``measured`` False: they follow the commands by construction,
        so they do not move them), or None to run it at the commanded ones; ``hold``: the caller's own reason
        to hold (e.g. stale joint states). Needs one measurement first."""
        if q is not None and measured and not self.sync(q):
            hold, q = True, None
        if self.q_cmd is None:
            raise ValueError(f"arm {self.arm}: no joint positions measured yet")
        at = self.q_cmd if q is None else np.asarray(q, dtype=float)
        cmd = self.chunks.command(now)
        hold = hold or cmd.hold
        qdot = np.zeros(7)
        if not hold:
            pos, _, jacobian = self.kinematics.forward_and_jacobian(at)
            v_world = self.bounds.limit(self.frame.point_to_world(pos), self.frame.vec_to_world(cmd.twist[:3]))
            twist = np.concatenate([self.frame.vec_to_base(v_world), cmd.twist[3:]])
            qdot = self.ik.joint_velocities(jacobian, at, twist)
        width = None if cmd.gripper_width is None else min(max(float(cmd.gripper_width), 0.0), self.gripper_max)
        qdot = self.limiter.limit(qdot, hold, (self.q_cmd - self.ik.q_lower, self.ik.q_upper - self.q_cmd))
        q_free = self.q_cmd + qdot * self.dt
        q_next = self.ik.clip_positions(q_free)
        if not (q_next == q_free).all():   # cut short at a limit: say what it did
            qdot = (q_next - self.q_cmd) / self.dt
            self.limiter.took(qdot)
        self.q_cmd = q_next
        if self.trace is not None:
            self.trace.append((now, qdot, self.chunks.switched_at))
        return Setpoint(self.q_cmd, qdot, width)

    def advance_to(self, t: float) -> None:
        """Run the steps up to time t that :meth:`trajectory` already handed out (with the joints it
        predicted for them: the same setpoints), so that a chunk accepted now joins them at t. Past the end of
        the last trajectory the executor is in the state it ended in, at rest."""
        if self._rest is not None and t >= self._rest[0] - 1e-9:
            ended = self._rest[1]
            self.q_cmd, self.limiter, self.chunks, self._rest = ended.q_cmd, ended.limiter, ended.chunks, None
        if self._next is None or self.at_rest or t - self._next > MAX_CATCH_UP_S:
            self._next, self._ahead = t, []   # at rest (or never run) nothing changes while it waits: no catch-up
            if self.at_rest:                  # held still since: no acceleration left from the last ramp down
                self.limiter.acc = np.zeros_like(self.limiter.acc)
        while self._next < t - 1e-9:
            self.step(self._next, self._ahead.pop(0) if self._ahead else None, measured=False)
            self._next += self.dt

    def trajectory(self, start: float, q: np.ndarray | None = None,
                   qdot: np.ndarray | None = None) -> JointTrajectory:
        """The setpoints from ``start`` until the arm is at rest after what it has to execute: what a
        trajectory controller gets once per plan (the ROS action nodes).

        The executor first catches up to ``start`` (:meth:`advance_to`; call that before accepting the chunk
        that makes a new trajectory, so the steps before ``start`` stay as handed out), then a copy of it
        runs ahead from the joints ``q``, ``qdot`` predicted for its first step (None: from the commanded ones,
        at rest), which follow its commands with the tracking lag (:meth:`_lagged`). The trajectory starts at
        the first IK period at or after ``start``."""
        self.advance_to(start)
        if q is not None and (np.shape(q) != (7,) or not np.all(np.isfinite(q))):
            q = None
        if self.q_cmd is None and q is not None:   # the first measurement seeds the commands
            self.sync(q)
        ghost = self._copy()
        ends = [c.end for c in (ghost.chunks.chunk, ghost.chunks.pending) if c is not None]
        steps = int(math.ceil((max(max(ends, default=start) - start, 0.0) + ghost.limiter.longest_stop) / self.dt))
        q0 = ghost.q_cmd if q is None else q
        usable = q is not None and qdot is not None and np.shape(qdot) == (7,) and np.all(np.isfinite(qdot))
        v0 = np.asarray(qdot, dtype=float) if usable else np.zeros(7)
        q_start, v_before = ghost.q_cmd.copy(), ghost.limiter.last.copy()
        steps = 0 if ghost.at_rest else steps
        setpoints, self._ahead, _, _ = ghost._lagged(self._next, q0, v0, steps, until_rest=True)
        self._rest = (self._next + len(setpoints) * self.dt, ghost) if ghost.at_rest else None
        # point k: position at t_k, commanded velocity over [t_k, t_k+1)
        qs = [q_start, *(sp.q for sp in setpoints)]
        vs = [*(sp.qdot for sp in setpoints), ghost.limiter.last.copy()]
        widths = [sp.width for sp in setpoints]
        widths.append(widths[-1] if widths else ghost.chunks.gripper)
        return JointTrajectory.from_segments(self._next + self.dt * np.arange(len(qs)), np.array(qs), np.array(vs),
                                             np.array([math.nan if w is None else w for w in widths]), v_before)

    def _lagged(self, t: float, q: np.ndarray, qdot: np.ndarray, steps: int, until_rest: bool = False):
        """Step this executor ``steps`` IK periods from time t with the IK at predicted joints, which start at
        ``q``, ``qdot`` and follow the commands with the first-order lag ``control.tracking_time_constant``
        (``until_rest``: stop early once at rest). Returns the setpoints, the predicted joints each was
        computed at, and the predicted joint positions and velocities after the last one."""
        q, qdot = np.asarray(q, dtype=float).copy(), np.asarray(qdot, dtype=float).copy()
        follow = self.dt / (self.tracking_time_constant + self.dt)
        setpoints, at = [], []
        for k in range(steps):
            at.append(q.copy())
            setpoints.append(self.step(t + k * self.dt, at[-1], measured=False))
            qdot = qdot + follow * (setpoints[-1].qdot - qdot)
            q = q + qdot * self.dt
            if until_rest and self.at_rest:
                break
        return setpoints, at, q, qdot

    def _copy(self) -> ArmExecutor:
        ghost = copy.copy(self)
        ghost.chunks, ghost.limiter, ghost.trace = copy.deepcopy(self.chunks), copy.deepcopy(self.limiter), None
        ghost.chunks.events, ghost._ahead, ghost._rest = [], [], None   # its own run's events only
        return ghost

    def predict(self, now: float, q: np.ndarray, qdot: np.ndarray, seconds: float, gripper_width: float,
                mirror: bool = False) -> ArmState:
        """The tool's state (world frame) after running what this executor has for ``seconds`` from the
        measured joint positions and velocities ``q``, ``qdot``: the joints follow the commands with the
        first-order lag ``control.tracking_time_constant``. The executor itself is left as it is; the
        gripper keeps ``gripper_width``. ``mirror``: this executor only mirrors the chunks of the one
        driving the arm (the coordinator's), so its commands start from ``qdot`` and its commanded positions
        from where that lag puts them (``q + tau qdot``), not from its own."""
        ghost = self._copy()
        q, qdot = np.asarray(q, dtype=float), np.asarray(qdot, dtype=float)
        if mirror or ghost.q_cmd is None:
            ghost.q_cmd = q + self.tracking_time_constant * qdot if mirror else q.copy()
        if mirror:
            ghost.limiter.last, ghost.limiter.acc = qdot.copy(), np.zeros_like(qdot)
        _, _, q, qdot = ghost._lagged(now, q, qdot, int(round(seconds / self.dt)))
        return arm_state_from_joints(self.kinematics, self.frame, q, qdot, float(gripper_width))

    def pop_events(self) -> Events:
        events, self.chunks.events = self.chunks.events, []
        return events

    def snapshot(self) -> tuple:
        """What accepting a chunk and computing its trajectory change, for :meth:`restore` (a trajectory that
        could not be sent after all: the arm runs on in the one it has)."""
        return (None if self.q_cmd is None else self.q_cmd.copy(), copy.deepcopy(self.limiter),
                copy.deepcopy(self.chunks), self._next, list(self._ahead), self._rest)

    def restore(self, snapshot: tuple) -> None:
        self.q_cmd, self.limiter, self.chunks, self._next, self._ahead, self._rest = snapshot
