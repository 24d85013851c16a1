"""`make soak`: CHAOS-1 at full size on a throwaway PostgreSQL of its own.

    python -m tests.chaos [--operations 10000] [--seed N] [--clients 16]     (CHAOS_SEED=N works too)

Prints the figures and every problem, leaves the history, the figures (soak.json) and every process's log in
.data/soak/<seed>/, and exits 1 on any problem.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys

from tests.chaos.soak import soak
from tests.chaos.workload import Shape
from tests.support import ROOT


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make soak", description=__doc__.split("\n")[0])
    parser.add_argument("--operations", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", random.randrange(10**9))))
    parser.add_argument("--clients", type=int, default=Shape.clients, help="concurrent clients")
    args = parser.parse_args(argv)
    folder = ROOT / ".data" / "soak" / str(args.seed)
    print(f"CHAOS_SEED={args.seed}: {args.operations} operations, output in {folder}", flush=True)
    result = asyncio.run(soak(folder, args.operations, args.seed, Shape(clients=args.clients)))
    for problem in result.problems:
        print(f"FAIL: {problem}")
    print(result.summary())
    if result.problems:
        print(f"reproduce with CHAOS_SEED={args.seed} make soak (logs: {folder})")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
