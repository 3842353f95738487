"""cost_service_node: serves /codi/evaluate_cost (codi_msgs/EvaluateCost) with the configured cost.

The cost is config/cost.yaml's handover cost on the batched kinematic cost simulator (the one the
planner's guidance uses); see :class:`codi_ros.ros.services.CostService`.
"""

from __future__ import annotations

from codi_msgs.srv import EvaluateCost
from rclpy.node import Node

from codi_ros.nodes._ros import run, torch_threads, world_config
from codi_ros.ros.msg_dict import fill, to_dict
from codi_ros.ros.services import CostService, kinematic_cost_evaluator


class CostServiceNode(Node):
    def __init__(self) -> None:
        super().__init__("cost_service_node")
        world = world_config(self)
        torch_threads(self)
        self.service = CostService(world, kinematic_cost_evaluator(world))
        self.create_service(EvaluateCost, "/codi/evaluate_cost", self.on_request)
        # A node with services only can hang at shutdown when Ctrl-C reaches it (its executor never wakes);
        # a periodic timer keeps the executor waking up so that it notices.
        self.create_timer(1.0, lambda: None)

    def on_request(self, request: EvaluateCost.Request, response: EvaluateCost.Response) -> EvaluateCost.Response:
        return fill(response, self.service.handle(to_dict(request)))


def main(args: list[str] | None = None) -> None:
    run(CostServiceNode, args=args)


if __name__ == "__main__":
    main()
