"""Helpers for tests/test_vmath.py: compiled loops over the ``_vmath`` stubs, references and
ULP errors (float32 against float64/SciPy references, float64 against mpmath)."""

from __future__ import annotations

import functools
import math

import mpmath as mp
import numpy as np
import scipy.special as sc
from numba import njit

from fastact import _vmath as vm

NAMES = ("exp", "expm1", "log1p", "log1p_unit", "tanh", "erfcx", "phicx", "xmtanh")


@functools.cache
def loop(name):
    """Compiled ``out[i] = vm.<name>(x[i])`` (or ``vm.xexp(a[i], x[i])``,
    ``vm.xexp_neg(a[i], x[i], dx[i])``)."""
    f = getattr(vm, name)
    if name == "xexp_neg":

        @njit(error_model="numpy", fastmath={"contract"})
        def run3(a, x, dx):
            out = np.empty_like(x)
            for i in range(x.size):
                out[i] = f(a[i], x[i], dx[i])
            return out

        return run3
    if name == "xexp":

        @njit(error_model="numpy", fastmath={"contract"})
        def run2(a, x):
            out = np.empty_like(x)
            for i in range(x.size):
                out[i] = f(a[i], x[i])
            return out

        return run2

    return elementwise(f)


def elementwise(f):
    """Compiled ``out[i] = f(x[i])`` for a jitted scalar function f."""

    @njit(error_model="numpy", fastmath={"contract"})
    def run(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = f(x[i])
        return out

    return run


def _xmtanh64(x):
    """x - tanh x in float64 for float32 checks: series/continued fraction below 1."""
    x = np.asarray(x, np.float64)
    k = np.zeros_like(x)
    x2 = x * x
    for n in range(30, 0, -1):
        k = x2 / ((2 * n + 1) + k)
    with np.errstate(all="ignore"):
        small = x * k / (1.0 + k)
    return np.where(np.abs(x) < 1.0, small, x - np.tanh(x))


REF64 = {  # float64 references, good to ~1e-6 float32 ULP
    "exp": np.exp,
    "expm1": np.expm1,
    "log1p": np.log1p,
    "log1p_unit": np.log1p,
    "tanh": np.tanh,
    "erfcx": sc.erfcx,
    "phicx": lambda x: 0.5 * sc.erfcx(x / np.sqrt(2.0)),
    "xmtanh": _xmtanh64,
}


def _erfcx_mp(x):
    x = +x
    if x > 1e4:  # asymptotic series, exact to far below float64 precision there
        v = 1 / (2 * x * x)
        return (1 - v + 3 * v * v) / (x * mp.sqrt(mp.pi))
    return mp.exp(x * x) * mp.erfc(x)


def _phicx_mp(x):
    return _erfcx_mp(x / mp.sqrt(2)) / 2


REFMP = {
    "exp": mp.exp,
    "expm1": mp.expm1,
    "log1p": mp.log1p,
    "log1p_unit": mp.log1p,
    "tanh": mp.tanh,
    "erfcx": _erfcx_mp,
    "phicx": _phicx_mp,
    "xmtanh": lambda x: _xmtanh_mp(x),
}


def _xmtanh_mp(x):
    if x == 0:
        return x
    with mp.extraprec(int(3 * max(0, -mp.log(abs(x), 2))) + 20):  # x - tanh x ~ x^3/3
        return +(x - mp.tanh(x))


def ulp32(got, ref):
    """|got - ref| in float32 ULPs of ref (float64 array), subnormal spacing as the floor."""
    ref = np.asarray(ref, np.float64)
    big = np.abs(ref) >= 2.0**128 * (1 - 2.0**-25)  # rounds to inf in float32
    ref = np.where(big, np.copysign(np.inf, ref), ref)
    got = np.asarray(got, np.float64)
    with np.errstate(all="ignore"):
        e = np.floor(np.log2(np.abs(ref)))
    u = np.exp2(np.maximum(np.where(np.isfinite(e), e, -126), -126) - 23)
    with np.errstate(invalid="ignore"):
        err = np.abs(got - ref) / u
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    return np.where(same, 0.0, err)


def ulp64(got, ref):
    """|got - ref| in float64 ULPs of ref (mpmath values), 2^-1074 as the floor."""
    out = np.empty(len(got))
    top = mp.mpf(2) ** 1024 * (1 - mp.mpf(2) ** -54)  # rounds to inf
    for i, (g, r) in enumerate(zip(got.tolist(), ref)):
        if mp.isfinite(r) and abs(r) >= top:
            r = math.copysign(math.inf, r)
        if g == r or (g != g and r != r):
            out[i] = 0.0
            continue
        if not mp.isfinite(r) or g != g or abs(g) == float("inf"):
            out[i] = np.inf
            continue
        e = mp.floor(mp.log(abs(r), 2)) if r != 0 else -1022
        out[i] = float(abs(mp.mpf(g) - r) / mp.mpf(2) ** (max(int(e), -1022) - 52))
    return out


def ref_mp(name, x, prec=90):
    with mp.workprec(prec):
        f = REFMP[name]
        return [f(mp.mpf(v)) for v in x.tolist()]


def bits32(rng, n, lo, hi):
    """n float32 uniform in bit pattern over [lo, hi] (same sign bounds allowed either way)."""
    out = []
    for a, b in ((lo, min(hi, -0.0)), (max(lo, 0.0), hi)):
        if a > b or (a == b == 0):
            continue
        ia, ib = sorted(abs(np.array([a, b], np.float32)).view(np.int32).tolist())
        v = rng.integers(ia, ib + 1, n // 2, dtype=np.int64).astype(np.int32).view(np.float32)
        out.append(-v if b <= 0 else v)
    return np.concatenate(out)


def bits64(rng, n, lo, hi):
    out = []
    for a, b in ((lo, min(hi, -0.0)), (max(lo, 0.0), hi)):
        if a > b or (a == b == 0):
            continue
        ia, ib = sorted(abs(np.array([a, b], np.float64)).view(np.int64).tolist())
        v = rng.integers(ia, ib + 1, n // 2, dtype=np.int64).view(np.float64)
        out.append(-v if b <= 0 else v)
    return np.concatenate(out)
