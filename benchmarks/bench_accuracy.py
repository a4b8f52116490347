"""Accuracy of the forward functions in ULP, against mpmath: ``[activation, impl, dtype]``.

The points (about 1,700 per dtype, fixed) cover [-10, 10] uniformly, magnitudes from 10^-6
to 10^2 and from the smallest normal to 10^30 (10^300 for float64) on a log scale, the kinks
of the registry's activations with their neighbouring floats, and a few subnormals. An error
is ``|y - f(x)| / ulp(f(x))`` with ``f(x)`` in mpmath (256 bits or more) and ulp that of the
dtype, no smaller than the least subnormal. ``track_max_ulp`` is the largest over the points
(SPEC §4 asks for at most 4 with a few stated exceptions; a NaN where the reference is finite
counts as infinite). NumPy's ``gelu`` is the tanh approximation, so its ULP against the exact
gelu measure the approximation.
"""

from __future__ import annotations

import functools

import numpy as np

import fastact

from . import references as R
from .common import ACTIVATIONS, DTYPES, make_impl

IMPLS = ["fastact-cpu", "numpy", "scipy", "torch"]


@functools.cache
def points(dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    fi = np.finfo(dt)
    top = 30 if dt == np.float32 else 300
    rng = np.random.default_rng(2024)

    def signed(v):
        return v * rng.choice([-1.0, 1.0], v.size)

    kinks = np.array([0.0, 0.5, 1.0, 3.0, 6.0, 20.0])
    kinks = np.concatenate([kinks, -kinks]).astype(dt)
    near = [kinks]
    for direction in (np.inf, -np.inf):
        k = kinks
        for _ in range(2):
            k = np.nextafter(k, dt.type(direction))
            near.append(k)
    parts = [
        rng.uniform(-10, 10, 600),
        signed(10 ** rng.uniform(-6, 2, 600)),
        signed(10 ** rng.uniform(np.log10(fi.tiny), top, 400)),
        np.array([fi.smallest_subnormal * 3, fi.tiny / 2, -fi.tiny / 4]),
    ]
    x = np.concatenate([p.astype(dt) for p in parts] + near)
    return np.unique(x)


@functools.cache
def reference(name: str, dtype: str):
    """``(hi, lo)`` float64 arrays with ``hi + lo`` = f(x) to well beyond float64."""
    import mpmath as mp

    f = R.mpmath_table(dtype)[name]
    hi, lo = [], []
    with mp.workprec(256):
        for v in points(dtype).tolist():
            x = mp.mpf(v)
            if name == "tanhshrink":  # x - tanh(x) cancels: x^3/3 - ...
                if abs(x) < mp.mpf("1e-20"):
                    r = x**3 / 3 - 2 * x**5 / 15
                else:
                    with mp.workprec(600):
                        r = f(x)
            else:
                r = f(x)
            h = float(r)
            hi.append(h)
            lo.append(float(r - h))
    return np.array(hi), np.array(lo)


def ulp_errors(y: np.ndarray, name: str, dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    hi, lo = reference(name, dtype)
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(all="ignore"):
        err = np.abs((y - hi) - lo)
        _, e = np.frexp(hi)
        p = np.finfo(dt).nmant + 1
        ulp = np.maximum(np.ldexp(1.0, e - p), float(np.finfo(dt).smallest_subnormal))
        u = err / ulp
    u[np.isnan(y) & ~np.isnan(hi)] = np.inf
    u[(y == hi) | (np.isinf(y) & np.isinf(hi) & (np.sign(y) == np.sign(hi)))] = 0.0
    return u


class Accuracy:
    params = [ACTIVATIONS, IMPLS, DTYPES]
    param_names = ["activation", "impl", "dtype"]
    unit = "ULP"
    timeout = 300

    def setup(self, activation, impl, dtype):
        R.mpmath_table(dtype)  # NotImplementedError without mpmath
        I = make_impl(impl, activation, "forward_")
        x = points(dtype).copy()
        if impl.startswith("fastact-"):
            y = fastact.ACTIVATIONS[activation].forward(x, target=I.target)
        elif impl == "numpy":
            with np.errstate(all="ignore"):
                y = R.NUMPY[activation][0](x)
        else:
            native = I.to_native(x)
            with np.errstate(all="ignore"):
                I.forward_(native)
            y = x
        self.ulp = ulp_errors(y, activation, dtype)

    def track_max_ulp(self, activation, impl, dtype):
        return float(np.max(self.ulp))
