"""Sigmoid in place, 10^2..10^8 elements, both dtypes: fastact next to the ways NumPy and
SciPy users compute it, and the memory floor.

impl:
- ``fastact-cpu`` / ``fastact-parallel`` / ``fastact-auto`` / ``fastact-cuda``: ``sigmoid_(x)``
- ``scipy``: ``scipy.special.expit(x, out=x)``
- ``numpy``: ``x[...] = 1 / (1 + np.exp(-x))`` (the plain formula, three temporaries)
- ``numpy-ufuncs``: the same formula as four in-place ufunc passes, no temporary
- ``numexpr``: ``numexpr.evaluate("1 / (1 + exp(-x))", out=x)`` (optional)
- ``torch``: ``torch.sigmoid_`` on a tensor sharing the array (optional)
- ``floor``: ``x *= c`` in a Numba ``prange`` loop on all threads: one read and one write per
  element, the memory floor of an in-place pass (SPEC §5)

10^8 float64 elements are 800 MB, and the plain NumPy formula needs three times that again.
``track_speedup`` is the time of SciPy / NumPy over fastact's (``target="auto"``), measured
interleaved in one process, so the ratio holds when the machine's speed drifts.
"""

from __future__ import annotations

import time

import numpy as np

from . import references as R
from .common import DTYPES, Fastact, array, buffer, fill, require_cuda, size, sizes, warm

SIZES = sizes("1e2", "1e3", "1e4", "1e5", "1e6", "1e7", "1e8")
IMPLS = [
    "fastact-cpu",
    "fastact-parallel",
    "fastact-auto",
    "fastact-cuda",
    "scipy",
    "numpy",
    "numpy-ufuncs",
    "numexpr",
    "torch",
    "floor",
]


def _numpy_ufuncs(x):
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1
    return np.reciprocal(x, out=x)


_FLOOR = None


def _floor_kernel():
    global _FLOOR
    if _FLOOR is None:
        import numba

        @numba.njit(parallel=True, error_model="numpy")
        def floor(x, c):
            for i in numba.prange(x.size):
                x[i] *= c

        _FLOOR = floor
    return _FLOOR


def sigmoid_impl(impl: str):
    """``(to_native, forward_, sync)`` of one way to compute sigmoid in place."""
    ident, nosync = (lambda a: a), (lambda: None)
    if impl.startswith("fastact-"):
        target = impl.split("-", 1)[1]
        if target == "cuda":
            require_cuda()
        f = Fastact(impl, "sigmoid", target=target)
        return f.to_native, f.forward_, f.sync
    if impl == "scipy":
        from scipy.special import expit

        return ident, (lambda x: expit(x, out=x)), nosync
    if impl == "numpy":
        f = R.NUMPY["sigmoid"][0]

        def numpy_(x):
            x[...] = f(x)
            return x

        return ident, numpy_, nosync
    if impl == "numpy-ufuncs":
        return ident, _numpy_ufuncs, nosync
    if impl == "numexpr":
        try:
            import numexpr as ne
        except ImportError:
            raise NotImplementedError("numexpr is not installed (optional peer)") from None
        return ident, (lambda x: ne.evaluate("1 / (1 + exp(-x))", out=x)), nosync
    if impl == "torch":
        torch = R.torch_module()
        return torch.from_numpy, torch.sigmoid_, nosync
    if impl == "floor":
        k = _floor_kernel()
        return ident, (lambda x: k(x, x.dtype.type(1.0000001))), nosync
    raise NotImplementedError(f"unknown implementation {impl!r}")


class Sigmoid:
    params = [IMPLS, SIZES, DTYPES]
    param_names = ["impl", "n", "dtype"]
    number = 1  # every timed call on fresh input (see bench_activations)
    timeout = 300

    def setup(self, impl, n, dtype):
        self.to_native, self.f, self.sync = sigmoid_impl(impl)
        host = buffer("x", size(n), dtype)
        lenient = impl in ("fastact-cuda", "torch")
        x = self.to_native(host)
        warm((impl, dtype, n), lambda: (self.f(x), self.sync()), lenient)
        self.x = self.to_native(fill(host))

    def time_sigmoid_(self, impl, n, dtype):
        self.f(self.x)
        self.sync()


def _best_of(calls, arrays, budget_s: float, rounds: int = 7):
    """Interleaved timing: per round, refill each array then time each call once; the
    minimum per call over the rounds (at least 2, more while under ``budget_s``)."""
    best = [float("inf")] * len(calls)
    t_end = time.perf_counter() + budget_s
    for r in range(rounds):
        for i, (f, a) in enumerate(zip(calls, arrays, strict=True)):
            fill(a)
            t0 = time.perf_counter()
            f(a)
            best[i] = min(best[i], time.perf_counter() - t0)
        if r >= 1 and time.perf_counter() > t_end:
            break
    return best


class SigmoidSpeedup:
    params = [["scipy", "numpy"], sizes("1e4", "1e6", "1e7"), DTYPES]
    param_names = ["peer", "n", "dtype"]
    unit = "x (peer time / fastact time)"
    timeout = 300

    def setup(self, peer, n, dtype):
        _, self.fa, _ = sigmoid_impl("fastact-auto")
        _, self.peer, _ = sigmoid_impl(peer)
        n = size(n)
        self.a, self.b = array(n, dtype), array(n, dtype)
        self.fa(self.a)  # compile / load outside the timing
        self.peer(self.b)

    def track_speedup(self, peer, n, dtype):
        t_fa, t_peer = _best_of([self.fa, self.peer], [self.a, self.b], budget_s=2.0)
        return t_peer / t_fa
