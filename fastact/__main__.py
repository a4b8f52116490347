"""Command line: ``python -m fastact info | bench | plot``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastact", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, threading layer, SIMD features, cache, CUDA")
    demo = sub.add_parser("demo", help="a tiny in-place forward/backward demonstration")
    demo.add_argument("--n", type=int, default=8)
    try:
        from . import _bench
    except ImportError:
        _bench = None
    if _bench is not None:
        _bench.add_parser(sub)
    from . import _plot

    _plot.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "info":
        from ._info import print_info

        print_info()
        return 0
    if args.command == "demo":
        from ._info import demo as run_demo

        run_demo(args.n)
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
