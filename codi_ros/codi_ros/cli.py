"""The ``codi`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Those modules import torch / MuJoCo inside ``run`` (not at module level), so ``codi --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("codi_ros.data.generate", "generate demonstration data sets with the scripted experts"),
    "train": ("codi_ros.training.train", "train the single-arm diffusion policy on a demonstration data set"),
    "demo": ("codi_ros.evaluation.demo", "one two-arm CoDi handover in simulation, with video and plots"),
    "eval": ("codi_ros.evaluation.evaluate", "closed-loop evaluation in simulation (single-arm, CoDi, baselines)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codi", description="Coordinated Diffusion (CoDi) for two Franka FR3 arms.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print("codi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
