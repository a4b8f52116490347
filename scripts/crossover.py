"""Where the parallel loop starts to pay off: the data behind ``_dispatch``'s thresholds.

For each activation and pass (forward in place, backward ``NAME_backward(g, x, out=g)``),
float32, at sizes 2^(k/2) around the thresholds, the time of ``target="parallel"`` over
``target="cpu"`` (below 1: the parallel loop is faster), each target timed as
call_overhead.py times it (a block of samples of calls on fresh copies, so the thread
pool's wake-ups count, as they do for a caller), the two blocks in alternating order over
several rounds, the median of the rounds' ratios. Then, per family,
the smallest size from which every member's ratio stays below 1, and the threshold that
``_dispatch`` has now.

    python scripts/crossover.py [--only sigmoid,gelu] [--rounds 7]
"""

from __future__ import annotations

import argparse

import call_overhead  # (this folder: the same timing as the bar's)
import numpy as np

import fastact
from fastact import _dispatch
from fastact._registry import select_names

# Sizes per family: 2^(k/2) over the range where its crossover lies on the CPUs measured.
_RANGES = {
    "heaviest": (20, 32), "heavy": (21, 33), "transcendental": (22, 34), "cheap": (24, 36),
    "light": (28, 39), "affine": (28, 41), "linear": (30, 41),
}


def sizes(family: str) -> list[int]:
    lo, hi = _RANGES[family]
    return sorted({int(round(2 ** (k / 2) / 64)) * 64 for k in range(lo, hi)})


def ratio(act, pass_: str, n: int, rounds: int) -> float:
    """Median over ``rounds`` of parallel's time over cpu's (in place, float32), each the
    median time of a call in a block of samples, timed as call_overhead.py times them (a
    call on a copy of the data that the caller has just written: what a caller's loop
    does; with copies written long before, which had left the caller's cache, the linear
    kernels paid off in parallel from 92 K on an Intel Xeon, against 450 K here)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, n).astype(np.float32)
    master = x if pass_ == "forward" else rng.uniform(-1, 1, n).astype(np.float32)
    calls = max(1, 200_000 // n)
    rs = []
    for target in ("cpu", "parallel"):
        call_overhead._in_place(act, target, pass_, x)(master.copy())
    for r in range(rounds):
        order = ("cpu", "parallel") if r % 2 == 0 else ("parallel", "cpu")
        t = {
            target: call_overhead._median_call(
                call_overhead._in_place(act, target, pass_, x), master, master, calls, 15
            )
            for target in order
        }
        rs.append(t["parallel"] / t["cpu"])
    return float(np.median(rs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated activations (default: all)")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    names = select_names(args.only)
    by_family: dict[tuple[str, str], list[tuple[str, int | None]]] = {}
    for name in names:
        act = fastact.ACTIVATIONS[name]
        for pass_ in ("forward", "backward"):
            family = act.family_for(pass_ == "backward")
            ns = sizes(family)
            rs = [ratio(act, pass_, n, args.rounds) for n in ns]
            # the smallest size from which every larger one measured is faster in parallel
            cross = next((n for i, n in enumerate(ns) if all(r < 1 for r in rs[i:])), None)
            by_family.setdefault((family, pass_), []).append((name, cross))
            print(
                f"{name:12s} {pass_:8s} {family:14s} crossover {cross or '-':>7}  "
                + " ".join(f"{n // 1024}K:{r:.2f}" for n, r in zip(ns, rs)),
                flush=True,
            )
    print("family / pass: the largest crossover of its members, and the threshold now")
    for (family, pass_), rows in sorted(by_family.items()):
        known = [c for _, c in rows if c is not None]
        worst = max(rows, key=lambda r: r[1] or 0)
        now = _dispatch.parallel_threshold(family, backward=pass_ == "backward")
        print(
            f"  {family:14s} {pass_:8s} crossover {max(known) if known else '-':>7} "
            f"({worst[0]})  threshold {now}"
        )


if __name__ == "__main__":
    main()
