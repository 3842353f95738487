"""coordinator_node's behaviour: the observed state, /codi/plan, the receding-horizon loop and /codi/stop.

Receding horizon (paper Sec. V): plan a chunk of H actions from the current state, execute the
first ``horizon.execution`` of them, plan again. Each chunk is stamped with the time its plan
started. Latency-aware (planner.yaml ``realtime.commit``, core/realtime.py): each plan commits to
the d actions the arms run while it is computed (read off a mirror of the action nodes' executors,
fed the same chunks) and plans the rest after them, from the tool states the mirrors predict for
then from the arms' joint states (:meth:`ArmExecutor.predict`; first order when an arm state
carries no joints); the action nodes switch to it exactly at its first new action. d follows the measured time from a
tick's start to its chunks (state, prediction and plan); a plan that took longer than its d steps is
dropped here, before the action nodes (which would drop it too) and their mirrors could disagree. Naive: the
action nodes skip what the planning latency used up. Planning slower than the rest of the running
chunk is reported as an overrun (the arms hold once their chunk runs out).
The handover is done when codi_ros/completion.py says so (the cube rests at the goal, released):
autonomous mode then ends and the arms stop, as they do in ``codi eval``, where the episode ends.
No plan is made from an arm state older than ``arm_timeout``, a cube pose older than
``cube_timeout`` or any NaN; while moving, the arms are then told to stop (an empty chunk).
An arm state with a ``fault`` (a reflex, a user stop) stops every arm at once and autonomous mode, and
no plan is made until /codi/recover has restarted the arms and their states report no fault
(:meth:`recovered`).

Two threads use a Coordinator (coordinator_node): the node's executor thread, which feeds it states
and plans (:meth:`tick`, :meth:`handle_plan`), and a services thread, which serves /codi/stop and
/codi/start at any moment. One lock guards the state and is never held while the planner runs; a stop
cancels a running plan (the planner asks ``cancelled`` before every score evaluation).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from codi_ros.completion import Completion
from codi_ros.config import WorldConfig
from codi_ros.control.executor import ArmExecutor
from codi_ros.control.kinematics import ArmKinematics
from codi_ros.core.planner import PlanningError, PlanOverrides, PlanResult
from codi_ros.core.realtime import LatencyEstimate, RealtimeConfig
from codi_ros.core.sampler import SamplingCancelled
from codi_ros.frames import ArmState, CubeState, WorldState, state_is_finite
from codi_ros.perception.fusion import CubePoseFusion, FusedPose, FusionConfig
from codi_ros.ros.messages import (
    Msg,
    parse_arm_joints,
    parse_arm_state,
    parse_chunk,
    parse_detection,
    planned_path_marker,
    stop_msg,
)
from codi_ros.ros.services import RequestError, failure, parse_plan_request, plan_response
from codi_ros.ros.watchdog import LogOnce, StateMonitor


class SupportsPlan(Protocol):
    def plan(self, state: WorldState, overrides: PlanOverrides | None = None,
             committed: dict[str, np.ndarray] | None = None,
             predicted: dict[str, ArmState] | None = None,
             cancelled: Callable[[], bool] | None = None) -> PlanResult: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class CoordinatorConfig:
    arm_timeout: float = 0.2     # s
    cube_timeout: float = 1.0    # s

    def __post_init__(self) -> None:
        if not (self.arm_timeout > 0 and self.cube_timeout > 0):
            raise ValueError(f"timeouts must be positive, got {self}")


CUBE = "cube pose"


def arm_key(arm: str) -> str:
    return f"arm '{arm}' state"


class Coordinator:
    def __init__(self, world: WorldConfig, planner: SupportsPlan, config: CoordinatorConfig | None = None,
                 fusion: FusionConfig | None = None, realtime: RealtimeConfig | None = None):
        self.world, self.planner = world, planner
        self.lock = threading.RLock()          # the state below; never held while the planner runs
        self.latency = LatencyEstimate(realtime or RealtimeConfig(commit=False), world.control.dt,
                                       delivery_margin=world.executor.delivery_margin)
        kinematics = ArmKinematics()
        self._running = {a: ArmExecutor(world, a, kinematics)
                         for a in world.arm_names}   # what each action node executes: the chunks it was sent
        self.config = config = config or CoordinatorConfig()
        self.monitor = StateMonitor({**{arm_key(a): config.arm_timeout for a in world.arm_names},
                                     CUBE: config.cube_timeout})
        self.fusion = CubePoseFusion(fusion or FusionConfig(max_age=config.cube_timeout))
        self.goal = np.array(world.goal_centre())
        self.completion = Completion(world)
        self.autonomous = False
        self._arms: dict[str, tuple[ArmState, float]] = {}
        self._joints: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}   # (q, qdot) of the latest arm state
        self._cube: FusedPose | None = None
        self._next_replan = -math.inf
        self._reset_planner = False            # /codi/start asked for a new episode: reset before the next plan
        self._after_plan = False               # the last tick planned (states may still be queued)
        self._executing_until = -math.inf     # end of the last chunk sent to the arms
        self._stops = 0                        # /codi/stop count: a plan started before a stop is not sent
        self._unknown_arms: set[str] = set()
        self._faults: dict[str, str] = {}      # latched: arm -> its fault, until recovered()
        self._fault_now: dict[str, tuple[str, float]] = {}   # arm -> (fault, stamp) of its latest state
        self._state_log, self._cube_log = LogOnce(), LogOnce()
        self._lines: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ inputs
    def on_arm_state(self, msg: Msg) -> list[dict]:
        """Take an arm state; the chunks to publish: the stops of every arm when it reports a new fault."""
        arm, state, stamp = parse_arm_state(msg)
        joints = parse_arm_joints(msg)
        fault = str(msg.get("fault", ""))
        with self.lock:
            if arm not in self.world.arm_names:
                if arm not in self._unknown_arms:
                    self._unknown_arms.add(arm)
                    self._lines.append(("warn", f"ignoring arm states of unknown arm {arm!r}"))
                return []
            self._arms[arm] = (state, stamp)
            self._joints[arm] = joints
            self.monitor.update(arm_key(arm), stamp, state_is_finite(state))
            self._fault_now[arm] = (fault, stamp)
            if not fault or arm in self._faults:
                return []
            self._faults[arm] = fault
            self.autonomous, self._executing_until = False, -math.inf
            self._stops += 1                   # a plan running now is not sent
            self._lines.append(("error", f"arm {arm}: {fault}: stopping every arm; /codi/recover restarts them"))
            return self.sent([stop_msg(a, stamp, self.world.control.dt) for a in self.world.arm_names], stamp)

    def faulted(self) -> list[str]:
        """The arms whose fault is latched: the ones /codi/recover restarts. Not the others: their controllers
        still hold their last commands, which a recovery's restart from the measured joints would jump from."""
        with self.lock:
            return list(self._faults)

    def recovered(self, since: float) -> tuple[bool, str]:
        """After /codi/recover restarted the arms: clear the faults of the arms whose states since ``since``
        report none; whether none is left, and what is."""
        with self.lock:
            for arm in list(self._faults):
                fault, stamp = self._fault_now.get(arm, ("", -math.inf))
                if stamp >= since and not fault:
                    del self._faults[arm]
            if self._faults:
                return False, f"still faulted: {self._fault_text()}"
            self._lines.append(("info", "recovered: no arm reports a fault; /codi/start to go on"))
            return True, "recovered: every arm is back and holding; /codi/start to go on"

    def _fault_text(self) -> str:
        return ", ".join(f"arm {a}: {f}" for a, f in self._faults.items())

    def on_cube_detection(self, msg: Msg) -> None:
        detection = parse_detection(msg)
        with self.lock:
            self.fusion.add(detection)

    def on_goal(self, goal: np.ndarray) -> None:
        goal = np.asarray(goal, dtype=float)
        with self.lock:
            if goal.shape == (3,) and np.all(np.isfinite(goal)):
                self.goal = goal
            else:
                self._lines.append(("warn", f"ignoring a goal that is not 3 finite numbers: {goal}"))

    def cube_pose(self, now: float) -> FusedPose | None:
        """The fused cube pose (also logs, once each, which detections were left out and why)."""
        with self.lock:
            fused = self.fusion.fuse(now)
            self._lines += self._cube_log.update(self.fusion.rejected, context="cube detection left out: ")
            if fused is not None:
                self.monitor.update(CUBE, fused.stamp, bool(np.all(np.isfinite(fused.pos))))
            self._cube = fused
            return fused

    def observed_state(self, now: float) -> WorldState:
        """The latest observed state; RequestError says what is stale, missing or NaN."""
        with self.lock:
            fused = self.cube_pose(now)
            problems = self.monitor.problems(now)
            if fused is None and (self.fusion.rejected or CUBE not in problems):   # (an earlier pose may be fresh)
                left_out = "; ".join(f"{source}: {why}" for source, why in self.fusion.rejected.items())
                problems[CUBE] = f"no cube pose now (detections left out: {left_out or 'none'})"
            if self._faults:
                problems["faults"] = f"{self._fault_text()} (/codi/recover)"
            if problems:
                raise RequestError("no usable observed state: " + "; ".join(problems.values()))
            arms = {a: self._arms[a] for a in self.world.arm_names}
            return WorldState(arms={a: s for a, (s, _) in arms.items()},
                              cube=CubeState(self._cube.pos, self._cube.quat), goal=self.goal.copy(),
                              stamp=min([t for _, t in arms.values()] + [self._cube.stamp]))

    def _cancelled(self, stops: int) -> Callable[[], bool]:
        """For the planner: whether /codi/stop was called since ``stops`` stops (then the plan is not needed)."""
        return lambda: self._stops != stops

    def _plan(self, state: WorldState, stops: int, **kwargs) -> PlanResult:
        """The planner's plan, outside the lock (a new episode's reset first)."""
        with self.lock:
            if self._reset_planner:
                self.planner.reset()
                self._reset_planner = False
        return self.planner.plan(state, cancelled=self._cancelled(stops), **kwargs)

    # ------------------------------------------------------------------ services
    def handle_plan(self, req: Msg, now: float) -> tuple[dict, list[dict]]:
        """(Plan response, chunks to publish: the response's chunks when ``execute`` is set)."""
        stops = self._stops
        try:
            explicit, overrides = parse_plan_request(req, self.world)
            state = explicit if explicit is not None else self.observed_state(now)
            result = self._plan(state, stops, overrides=overrides)
        except (RequestError, PlanningError) as e:
            return failure(str(e)), []
        except SamplingCancelled:
            return failure("cancelled: /codi/stop was called while planning"), []
        response = plan_response(result, self.world, start=now)
        if not req.get("execute", False):
            return response, []
        with self.lock:
            if stops != self._stops:
                response["message"] += "; not executed: /codi/stop was called while planning"
                return response, []
            self._executing_until = now + self.world.horizon.prediction * self.world.control.dt
            return response, self.sent(response["chunks"], now + result.latency_s)

    def stop(self, now: float) -> list[dict]:
        """/codi/stop: leave autonomous mode, cancel a running plan; the empty chunks that stop every arm."""
        with self.lock:
            self.autonomous = False
            self._stops += 1
            self._executing_until = -math.inf
            self._lines.append(("info", "stop: autonomous mode off, arms stopping"))
            return self.sent([stop_msg(a, now, self.world.control.dt) for a in self.world.arm_names], now)

    def start(self) -> tuple[bool, str]:
        """/codi/start: autonomous mode on, a new episode for the planner (its seed sequence restarts and
        the previous plan is forgotten, as codi eval resets it per episode: before the next plan); the next
        tick plans. Refused while an arm is faulted."""
        with self.lock:
            if self._faults:
                return False, f"refused: {self._fault_text()}; /codi/recover first"
            self._reset_planner = True
            self.completion.reset()
            self.autonomous, self._next_replan = True, -math.inf
            self._lines.append(("info", "start: autonomous mode on"))
            return True, "autonomous mode on"

    def due(self, now: float) -> bool:
        """Whether :meth:`tick` would plan now (autonomous, at the tick nearest the replanning time)."""
        return self.autonomous and now >= self._next_replan - self.world.control.dt / 2

    # ------------------------------------------------------------------ receding-horizon loop
    def tick(self, now: float) -> list[dict]:
        """One cycle of the loop (call at the control rate, and again right after a plan): the chunks to
        publish, if any."""
        with self.lock:
            if not self.due(now):
                return []
            after_plan, self._after_plan = self._after_plan, False
            stops, tic = self._stops, time.perf_counter()
            try:
                state = self.observed_state(now)
            except RequestError as e:
                if after_plan:
                    # The tick right after a plan runs before the state messages that queued while it planned
                    # (the executor thread plans): their age is the plan's, not the robot's. Plan at the next
                    # tick, once they are in.
                    return []
                return self._not_planning(e, now)
            if self.completion.update(state, now):
                return self._done(state, now)
            self._after_plan = True
            committed = self.committed(now, state)
            predicted = self.predicted(now, committed)
            preparation = time.perf_counter() - tic
        try:
            result = self._plan(state, stops, committed=committed, predicted=predicted)
        except SamplingCancelled:
            return []                                 # stopped while planning: the stop has told the arms
        except PlanningError as e:
            with self.lock:
                return self._not_planning(e, now)
        with self.lock:
            if stops != self._stops:                  # stopped while planning: drop the plan
                return []
            self._lines += self._state_log.update({})
            elapsed = preparation + result.latency_s   # state, prediction and plan: what d must cover
            self.latency.update(elapsed)
            h, dt = self.world.horizon, self.world.control.dt
            d = 0 if committed is None else len(next(iter(committed.values())))
            if d and elapsed > d * dt:
                # Its committed actions are over before it could be sent: the action nodes would drop it too (their
                # late_tolerance is left for the delivery), so it is dropped here, where the mirrors see it.
                self._lines.append(("warn", f"dropped a late plan: it took {elapsed:.3f} s, its {d} committed "
                                            f"steps cover {d * dt:.3f} s; the arms run on"))
                return []
            left = self._executing_until - now
            if left > 0 and elapsed > left:
                self._lines.append(("warn", f"planning overrun: {elapsed:.3f} s, but only {left:.3f} s of the "
                                            f"previous chunk were left; the arms held for {elapsed - left:.3f} s"))
            self._executing_until = now + h.prediction * dt
            self._next_replan = now + h.execution * dt
            return self.sent(plan_response(result, self.world, start=now)["chunks"], now + elapsed)

    def replan_now(self, now: float) -> bool:
        """Whether the last tick planned and the next plan is already due (the plan took about the execution
        horizon or longer): then tick again as soon as the states queued meanwhile are in, not on the next
        timer tick. After a quicker plan the timer's due tick plans; re-ticking until then spun a core."""
        return self._after_plan and self.due(now)

    def _done(self, state: WorldState, now: float) -> list[dict]:
        """The handover is complete: autonomous mode off, the arms stop (/codi/start begins the next task)."""
        distance = float(np.linalg.norm(state.cube.pos - state.goal))
        self._lines.append(("info", f"handover complete: the cube rests {distance:.3f} m from the goal, released; "
                                    f"autonomous mode off"))
        self.autonomous, self._executing_until = False, -math.inf
        return self.sent([stop_msg(a, now, self.world.control.dt) for a in self.world.arm_names], now)

    def _not_planning(self, e: Exception, now: float) -> list[dict]:
        """No plan (stale or NaN state, a refused state): log it once; arms still moving on an old plan stop."""
        self._lines += self._state_log.update({"state": f"not planning: {e}"})
        if self._executing_until > now:
            self._executing_until = -math.inf
            return self.sent([stop_msg(a, now, self.world.control.dt) for a in self.world.arm_names], now)
        return []

    def committed(self, now: float, state: WorldState) -> dict[str, np.ndarray] | None:
        """The d actions each arm runs from ``now`` while the next plan is computed (None: naive, d = 0);
        an arm that executes nothing holds still."""
        d = self.latency.commit_steps()
        if d == 0:
            return None
        return {arm: running.chunks.commitment(now, d, state.arms[arm].gripper_width)
                for arm, running in self._running.items()}

    def predicted(self, now: float, committed: dict[str, np.ndarray] | None) -> dict[str, ArmState] | None:
        """Each tool's state when a plan started at ``now`` takes over (after the committed actions), as the
        mirror executors predict it from the arm's latest joint state; None (first order) without a
        commitment or when an arm state came without joints."""
        if committed is None or any(self._joints.get(a) is None for a in self.world.arm_names):
            return None
        out = {}
        for arm, running in self._running.items():
            (q, qdot), (state, stamp) = self._joints[arm], self._arms[arm]
            ahead = now - stamp + len(committed[arm]) * self.world.control.dt
            out[arm] = running.predict(stamp, q, qdot, ahead, state.gripper_width, mirror=True)
        return out

    def sent(self, chunks: list[dict], at: float) -> list[dict]:
        """Record chunks as sent to the action nodes at time ``at`` (the mirror accepts what they accept)."""
        for msg in chunks:
            arm, _, chunk = parse_chunk(msg)
            if arm in self._running:
                self._running[arm].accept(chunk, at)
        return chunks

    def planned_paths(self, chunks: list[dict]) -> list[dict]:
        """The RViz markers of the chunks about to be published (:func:`planned_path_marker`): each arm's
        planned tool path from where its latest state has the tool, or its deletion for a stop."""
        markers = []
        with self.lock:
            for msg in chunks:
                arm, _, chunk = parse_chunk(msg)
                if arm in self._arms:
                    markers.append(planned_path_marker(self.world.arm_names.index(arm), chunk,
                                                       self._arms[arm][0].ee_pos, self.world.base_frame(arm)))
        return markers

    def pop_log(self) -> list[tuple[str, str]]:
        """(level, text) lines to log since the last call."""
        with self.lock:
            lines, self._lines = self._lines, []
            return lines
