"""The planner's cost J evaluated by the /codi/evaluate_cost service instead of in-process (issue 5).

:class:`RemoteCost` is a :class:`~codi_ros.core.cost.Cost`: at every guided denoising step it sends the
world state and the K candidate joint chunks as one EvaluateCost request and reads back one cost per
candidate and the per-term breakdown. The transport is a plain ``call(request, timeout_s) -> response``
on message dicts (coordinator_node wraps an rclpy client; tests pass in-memory ones). An absent service,
a timeout, ``success = false`` or a malformed answer raises :class:`CostServiceError`, a PlanningError:
the plan fails with a message naming the service, and the coordinator holds as for any failed plan.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from codi_ros.config import ConfigError
from codi_ros.core.cost import CostValue
from codi_ros.core.planner import PlanningError
from codi_ros.frames import WorldState
from codi_ros.ros.messages import Msg
from codi_ros.ros.services import cost_request

EVALUATE_COST = "/codi/evaluate_cost"
COST_BACKENDS = ("in_process", "service")
DEFAULT_TIMEOUT_S = 1.0
# (EvaluateCost request dict, timeout s) -> response dict. Raises TimeoutError when no answer comes in time,
# ConnectionError when the service is not there.
Transport = Callable[[dict, float], Msg]


class CostServiceError(PlanningError):
    """The cost service did not give a usable answer; the message starts with the service name."""


class RemoteCost:
    """J(state, joint_chunks) -> CostValue through /codi/evaluate_cost; ``state`` is the full WorldState."""

    def __init__(self, call: Transport, timeout_s: float = DEFAULT_TIMEOUT_S, service: str = EVALUATE_COST):
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ConfigError(f"cost_service_timeout: must be finite and > 0 s, got {timeout_s}")
        self.call, self.timeout_s, self.service = call, timeout_s, service

    def __call__(self, state: WorldState, joint_chunks: Tensor) -> CostValue:
        if joint_chunks.requires_grad:
            raise CostServiceError(f"cost service {self.service}: answers cost values, not gradients; "
                                   "guidance.estimator must be score_function")
        request = cost_request(state, joint_chunks.double().cpu().numpy())
        try:
            response = self.call(request, self.timeout_s)
        except OSError as e:          # TimeoutError, ConnectionError
            raise CostServiceError(f"cost service {self.service}: {e}") from None
        costs, terms = parse_cost_response(response, len(joint_chunks), self.service)
        as_t = lambda x: torch.as_tensor(x, dtype=joint_chunks.dtype)  # noqa: E731
        return CostValue(total=as_t(costs), terms={k: as_t(v) for k, v in terms.items()})


def parse_cost_response(resp: Msg, count: int, service: str = EVALUATE_COST
                        ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(costs (count,), {term: (count,)}) of an EvaluateCost response; CostServiceError unless it succeeded
    with ``count`` finite values everywhere."""
    where = f"cost service {service}"
    if not isinstance(resp, Mapping):
        raise CostServiceError(f"{where}: the answer is not an EvaluateCost response ({type(resp).__name__})")
    if not resp.get("success", False):
        raise CostServiceError(f"{where} failed: {resp.get('message', '') or '(no message)'}")
    costs = _values(resp.get("costs"), count, f"{where}: costs")
    terms = {}
    for i, term in enumerate(resp.get("terms", [])):
        name = str(term.get("name", "")) if isinstance(term, Mapping) else ""
        if not name:
            raise CostServiceError(f"{where}: terms[{i}] has no name")
        terms[name] = _values(term.get("values"), count, f"{where}: terms[{name!r}]")
    return costs, terms


def _values(values: Sequence[Any] | None, count: int, field: str) -> np.ndarray:
    try:
        v = np.asarray(values if values is not None else [], dtype=np.float64)
    except (TypeError, ValueError):
        raise CostServiceError(f"{field}: not a list of numbers") from None
    if v.shape != (count,):
        raise CostServiceError(f"{field}: {v.size} values for {count} candidates")
    if not np.all(np.isfinite(v)):
        raise CostServiceError(f"{field}: NaN or inf")
    return v


class Future(Protocol):
    """What rclpy's Client.call_async and concurrent.futures return."""

    def add_done_callback(self, fn: Callable[[Any], object]) -> None: ...
    def cancel(self) -> object: ...
    def result(self) -> Any: ...


def wait_for_answer(future: Future, timeout_s: float) -> Any:
    """The future's result within ``timeout_s``, else TimeoutError (the future is cancelled: rclpy then drops a
    late answer). Waits on an event and never spins, so the executor must complete the future in another thread:
    the client needs a callback group other than the waiting callback's."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout_s):
        future.cancel()
        raise TimeoutError(f"no answer within {timeout_s:.3g} s")
    result = future.result()
    if result is None:
        raise ConnectionError("the request was cancelled before an answer came")
    return result
