"""The ``codi`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Those modules import torch / MuJoCo inside ``run`` (not at module level), so ``codi --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from codi_ros import bounds

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("codi_ros.data.generate", "generate demonstration data sets with the scripted experts"),
    "train": ("codi_ros.training.train", "train the single-arm diffusion policy on a demonstration data set"),
    "finetune": ("codi_ros.training.finetune", "fine-tune the joint policy: the DPMD, SDAC, EXPO baselines (App. D)"),
    "demo": ("codi_ros.evaluation.demo", "one two-arm CoDi handover in simulation, with video and plots"),
    "eval": ("codi_ros.evaluation.evaluate", "closed-loop evaluation in simulation (single-arm, CoDi, baselines)"),
    "bench": ("codi_ros.evaluation.bench", "time the planner, policy or data generator, beside a closed-loop check"),
    "calibrate": ("codi_ros.perception.calibration", "calibrate the real arms: hand-eye (wrist camera in tool frame)"),
}
# subcommands that run torch in this process: their --threads sets torch's thread count (two torch
# processes with default threads on 2 cores ran ~20x slower than with one thread each)
TORCH_THREADS = {"demo": 1, "eval": 1, "bench": 1}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codi", description="Coordinated Diffusion (CoDi) for two Franka FR3 arms.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
        if name in TORCH_THREADS:
            p.add_argument("--threads", type=int, default=TORCH_THREADS[name],
                           help="torch threads of this process (default %(default)s; one per process when several run)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in TORCH_THREADS:
        try:
            bounds.check_options(args, {"threads": "threads"})
        except bounds.BoundsError as e:
            print(f"codi {args.command}: error: {e}", file=sys.stderr)
            return 2
        import torch
        torch.set_num_threads(args.threads)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print("codi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
