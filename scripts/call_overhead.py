"""Two of SPEC §5's small-array figures, measured in one interleaved run:

1. the cost of a 1,000-element call, ``NAME_(x)`` in place with ``target="auto"``, and of
   the backward pass ``NAME_backward(g, x, out=g)``, against ``np.tanh(x, out=x)`` on the
   same array; and into a new array, ``NAME(x)`` and ``NAME_backward(g, x)``, against
   ``np.tanh(x)`` (the bar: at most 2x);
2. ``target="auto"`` against the better of ``"cpu"`` and ``"parallel"`` on either side of
   the parallel threshold of each activation's family and pass, and at 10^4 and 10^6, forward
   in place and backward (the bar: at most 10% slower).

    python scripts/call_overhead.py [--only sigmoid,relu] [--repeat 301]

Medians of many short calls (each sample times a batch of calls, each on a fresh copy of
the input, so the timer's own cost does not count; refilling is not timed). The small calls
are timed as user code writes them (no lambda around them), their forms taking turns sample
by sample, after enough calls that the small-call ufunc is built.
"""

from __future__ import annotations

import argparse
import time
import timeit

import numpy as np

import fastact
from fastact import _dispatch
from fastact._registry import select_names


def auto_sizes(family: str, pass_: str) -> list[int]:
    """Where the choice matters: either side of the family's threshold for the pass (0.7x and
    1.4x it), and 10^4 and 10^6, far from it."""
    t = _dispatch.parallel_threshold(family, backward=pass_ == "backward")
    return sorted({10_000, round(0.7 * t), round(1.4 * t), 1_000_000})


def _median_call(fn, x, master, calls: int, repeat: int) -> float:
    """Median over ``repeat`` samples of the time of one call. A sample times ``calls``
    calls, each on its own fresh copy of ``master`` (an in-place activation applied again
    and again drifts to other values: tanhshrink's to subnormals, which are slow)."""
    copies = [np.empty_like(x) for _ in range(calls)]
    ts = []
    for _ in range(repeat):
        for c in copies:
            np.copyto(c, master)
        t = time.perf_counter()
        for c in copies:
            fn(c)
        ts.append((time.perf_counter() - t) / calls)
    return float(np.median(ts))


def _median_stmts(stmts, names: dict, calls: int, repeat: int) -> list[float]:
    """Medians over ``repeat`` samples of the time of each ``(stmt, master)``: a call on the
    array ``c`` written as user code would write it (no wrapper around it: a lambda costs
    0.1 µs, a seventh of ``np.tanh`` on 1,000 elements). A sample runs it on ``calls`` fresh
    copies of ``master``; ``names`` are the other names it uses. The statements take turns,
    sample by sample, so a slow spell of the machine falls on all of them."""
    timers, copies = [], []
    for stmt, master in stmts:
        cs = [master.copy() for _ in range(calls)]
        timers.append(timeit.Timer("for c in cs:\n    " + stmt, globals={**names, "cs": cs}))
        copies.append((cs, master))
    ts = [[] for _ in stmts]
    for _ in range(repeat):
        for timer, (cs, master), t in zip(timers, copies, ts):
            for c in cs:
                np.copyto(c, master)
            t.append(timer.timeit(1) / calls)
    return [float(np.median(t)) for t in ts]


# (form, the fastact call, np.tanh's call it is held against, whether c holds g)
_FORMS = (
    ("in place", "f_(c)", "np.tanh(c, out=c)", False),
    ("backward", "b(c, x, out=c)", "np.tanh(c, out=c)", True),
    ("new", "f(c)", "np.tanh(c)", False),
    ("new backward", "b(c, x)", "np.tanh(c)", True),
)


def small_calls(names, repeat: int) -> None:
    rng = np.random.default_rng(0)
    master = rng.uniform(-3, 3, 1000).astype(np.float32)
    gmaster = rng.uniform(-1, 1, 1000).astype(np.float32)
    print(
        "1,000 float32 elements, median per call (us); bar: <= 2x np.tanh\n"
        "  in place: NAME_(x), NAME_backward(g, x, out=g) against np.tanh(x, out=x);\n"
        "  new array: NAME(x), NAME_backward(g, x) against np.tanh(x)"
    )
    worst = dict.fromkeys((f[0] for f in _FORMS), 0.0)
    _median_stmts([("np.tanh(c)", master)], {"np": np}, 20, repeat)  # (warm up)
    for name in names:
        act = fastact.ACTIVATIONS[name]
        for _ in range(_dispatch.SerialUfuncs.WARM_CALLS):  # compile / load, build the ufuncs
            act.forward_(master.copy())
            act.forward(master)
            act.backward(gmaster.copy(), master, out=gmaster.copy())
            act.backward(gmaster, master)
        env = {"np": np, "f_": act.forward_, "f": act.forward, "b": act.backward, "x": master}
        refs = sorted({f[2] for f in _FORMS})
        times = _median_stmts(
            [(ref, master) for ref in refs]
            + [(stmt, gmaster if on_g else master) for _, stmt, _, on_g in _FORMS],
            env, 20, repeat,
        )
        tanh = dict(zip(refs, times))
        ratios = {
            form: t / tanh[ref] for (form, _, ref, _), t in zip(_FORMS, times[len(refs):])
        }
        for k, v in ratios.items():
            worst[k] = max(worst[k], v)
        print(
            f"  {name:14s} np.tanh {tanh['np.tanh(c, out=c)'] * 1e6:5.2f} "
            f"(new {tanh['np.tanh(c)'] * 1e6:5.2f})  x "
            + "  ".join(f"{k} {v:4.2f}" for k, v in ratios.items())
        )
    print("  worst x np.tanh: " + "  ".join(f"{k} {v:.2f}" for k, v in worst.items()))


def _in_place(act, target: str, pass_: str, x):
    if pass_ == "forward":
        return lambda a: act.forward_(a, target=target)
    return lambda g: act.backward(g, x, out=g, target=target)


ROUNDS = 6  # (with two, a slow spell over one block put a few cells at 1.2-2.2)


def auto_choice(names, repeat: int) -> None:
    print("target='auto' vs the better of 'cpu' and 'parallel' (float32, in place, us)")
    worst = 0.0
    for name in names:
        act = fastact.ACTIVATIONS[name]
        for pass_ in ("forward", "backward"):
            for n in auto_sizes(act.family_for(pass_ == "backward"), pass_):
                rng = np.random.default_rng(1)
                xm = rng.uniform(-3, 3, n).astype(np.float32)
                # the forward pass overwrites x; the backward pass, g (x stays)
                master = xm if pass_ == "forward" else rng.uniform(-1, 1, n).astype(np.float32)
                calls = max(1, 200_000 // n)
                t: dict = {}
                for target in ("cpu", "parallel", "auto"):
                    _in_place(act, target, pass_, xm)(master.copy())
                # each target in a block of samples (interleaving single calls measures the
                # thread pool waking up, not the choice), the trio in ROUNDS rounds of
                # alternating order: the median of the blocks' medians, so a slow spell of
                # the machine over one or two blocks does not decide a cell
                for r in range(ROUNDS):
                    order = ("cpu", "parallel", "auto")
                    for target in order if r % 2 == 0 else order[::-1]:
                        call = _in_place(act, target, pass_, xm)
                        t.setdefault(target, []).append(
                            _median_call(call, master, master, calls, max(5, repeat // 20))
                        )
                med = {k: float(np.median(v)) for k, v in t.items()}
                best = min(med["cpu"], med["parallel"])
                worst = max(worst, med["auto"] / best)
                print(
                    f"  {name:12s} {pass_:8s} n={n:>9,d}  cpu {med['cpu'] * 1e6:9.1f}  "
                    f"parallel {med['parallel'] * 1e6:9.1f}  auto {med['auto'] * 1e6:9.1f}  "
                    f"auto/best {med['auto'] / best:5.2f}"
                )
    print(f"  worst auto/best {worst:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated activations (default: all)")
    ap.add_argument("--repeat", type=int, default=301)
    ap.add_argument("--no-auto", action="store_true", help="only the 1,000-element calls")
    args = ap.parse_args()
    names = select_names(args.only)
    small_calls(names, args.repeat)
    if not args.no_auto:
        auto_choice(names, args.repeat)


if __name__ == "__main__":
    main()
