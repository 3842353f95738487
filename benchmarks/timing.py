"""Wall-clock timing and the common command line shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch


def bench_args(doc: str, repeats: int, repeats_help: str) -> argparse.Namespace:
    """Parse --repeats and --threads (and set torch's CPU thread count)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=repeats, help=f"{repeats_help} (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: one core, as on a shared machine)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    return args


def sample_ms(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ms.append(1e3 * (time.perf_counter() - t0))
    return ms
