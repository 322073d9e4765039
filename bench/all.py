"""Every benchmark in turn, each printing its table (`make bench`; about 20 minutes on 2 cores).

    python -m bench.all
    python -m bench.all --only train_throughput quality_budget

The budgets here are the modest ones; each benchmark's own flags give longer or larger runs (see
bench/README.md). A benchmark that fails is reported and the others still run; the exit code is 1
if any failed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

# (module in bench/, its arguments): the default budget of `python -m bench.all`.
BENCHMARKS = [
    ("train_throughput", []),
    ("quality_budget", ["--minutes", "2"]),
    ("agent_speed", []),
    ("distributed", []),
    ("series_time", []),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__.split("\n")[0])
    names = [name for name, _ in BENCHMARKS]
    parser.add_argument("--only", nargs="*", choices=names, default=names, help="benchmarks to run")
    opts = parser.parse_args(argv)
    results = []
    for name, args in BENCHMARKS:
        if name not in opts.only:
            continue
        print(f"\n### python -m bench.{name} {' '.join(args)}\n", flush=True)
        start = time.perf_counter()
        try:
            code = importlib.import_module(f"bench.{name}").main(args)
        except Exception:  # report and go on: one failure should not hide the other tables
            traceback.print_exc()
            code = 1
        results.append((name, time.perf_counter() - start, code))
    print(f"\n{'benchmark':<20}{'seconds':>9}  exit code")
    for name, seconds, code in results:
        print(f"{name:<20}{seconds:>9.0f}  {code}")
    return 1 if any(code for _, _, code in results) else 0


if __name__ == "__main__":
    sys.exit(main())
