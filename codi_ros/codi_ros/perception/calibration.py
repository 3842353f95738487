"""``codi calibrate hand-eye``: the wrist camera's pose in the tool frame from recorded pose pairs
(:mod:`codi_ros.perception.hand_eye`), written into ``config/hw.yaml``.

    codi calibrate hand-eye --pairs left_pairs.json                  # prints the result and its residuals
    codi calibrate hand-eye --pairs left_pairs.json --hw-config config/hw.yaml   # and writes the arm's lines

The pairs file (JSON, the arm named in it): ``{"arm": "left", "pairs": [{"tcp_in_base": {"translation": [x, y,
z], "quaternion_xyzw": [...]}, "marker_in_camera": {...}}, ...]}``; record 10 or more, rotating the tool about
at least two axes, the marker fixed (README "Running on two FR3s").
"""

from __future__ import annotations

import argparse
import json
import sys

TARGETS = ("hand-eye",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", choices=TARGETS, help="what to calibrate")
    p.add_argument("--pairs", required=True, help="recorded (tool pose, marker pose) pairs, JSON")
    p.add_argument("--hw-config", default=None,
                   help="hw.yaml to write the arm's hand_eye_* lines into (default: print only)")
    p.add_argument("--method", default="park", help="OpenCV hand-eye method: tsai | park | horaud | andreff | "
                                                    "daniilidis (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from codi_ros.perception.aruco import PerceptionError
    from codi_ros.perception.hand_eye import METHODS, calibrate_file

    if args.method not in METHODS:
        print(f"codi calibrate: error: --method: one of {', '.join(METHODS)}, got {args.method!r}", file=sys.stderr)
        return 2
    try:
        result = calibrate_file(args.pairs, args.hw_config, method=args.method)
    except (OSError, PerceptionError, ValueError) as e:
        print(f"codi calibrate: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result.as_dict(), indent=2))
    print(f"residuals over {result.n_pairs} pairs: {1e3 * result.translation_rms_m:.2f} mm, "
          f"{result.rotation_rms_deg:.2f} deg RMS" + (f"; written to {args.hw_config}" if args.hw_config else ""))
    return 0
