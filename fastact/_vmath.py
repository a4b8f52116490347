"""Elementary math for the scalar formulas, generic over float32 and float64.

Every function here takes scalars of one float type and returns that type. Each is a plain
Python function (so it runs as-is under the CUDA simulator and in pure Python) with a Numba
``@overload`` that picks the float32 or float64 implementation at compile time.

Contract (what ``_formulas`` relies on):

- ``exp, expm1, log1p, tanh``: faithful to ~1 ULP, C99 special values, subnormal results kept.
- ``xexp(a, x)`` = a·e^x rounded once, without the intermediate underflow of e^x
  (e^x may be subnormal or zero while a·e^x is a normal number).
- ``erfcx(x)`` = e^(x²)·erfc(x) for x >= 0 (decreasing from 1 to 1/(x·√π)).
- ``xmtanh(x)`` = x − tanh x without cancellation near 0.
- ``fma(a, b, c)`` = a·b + c with one rounding.
- ``sq_split(x)`` = (hi, lo) with hi + lo == x·x exactly.

This first version computes float32 through float64 ``math`` calls (scalar libm, exact to
well under 1 float32 ULP) and float64 through ``math`` with care for cancellation and
underflow.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

_F32 = types.float32
_F64 = types.float64

# --------------------------------------------------------------------------- fma


def fma(a, b, c):
    """a*b + c with a single rounding (exact rational arithmetic in pure Python)."""
    t = type(a)
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return t(a * b + c)
    return t(float(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))))


@intrinsic
def _llvm_fma(typingctx, a, b, c):
    if not (a == b == c and a in (_F32, _F64)):
        return None
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):
        ty = args[0].type
        name = "llvm.fma.f32" if a == _F32 else "llvm.fma.f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty] * 3), name)
        return builder.call(fn, args)

    return sig, codegen


@overload(fma)
def _ol_fma(a, b, c):
    if a == b == c and a in (_F32, _F64):
        return lambda a, b, c: _llvm_fma(a, b, c)
    return None


def sq_split(x):
    """(hi, lo) with hi = fl(x*x) and hi + lo = x*x exactly."""
    hi = x * x
    return hi, fma(x, x, -hi)


@overload(sq_split)
def _ol_sq_split(x):
    if x in (_F32, _F64):

        def impl(x):
            hi = x * x
            return hi, fma(x, x, -hi)

        return impl
    return None


# ------------------------------------------------------------------ elementary


def _generic(pyfunc, f32impl, f64impl):
    """Register Numba implementations of ``pyfunc`` for float32 and float64."""

    @overload(pyfunc)
    def _ol(x):
        if x == _F32:
            return f32impl
        if x == _F64:
            return f64impl
        return None

    return pyfunc


def exp(x):
    """e^x."""
    with np.errstate(all="ignore"):
        return type(x)(np.exp(x))


def expm1(x):
    """e^x − 1."""
    with np.errstate(all="ignore"):
        return type(x)(np.expm1(x))


def log1p(x):
    """log(1 + x)."""
    with np.errstate(all="ignore"):
        return type(x)(np.log1p(x))


def tanh(x):
    """tanh x."""
    return type(x)(np.tanh(x))


_generic(exp, lambda x: np.float32(math.exp(np.float64(x))), lambda x: math.exp(x))
_generic(expm1, lambda x: np.float32(math.expm1(np.float64(x))), lambda x: math.expm1(x))
_generic(log1p, lambda x: np.float32(math.log1p(np.float64(x))), lambda x: math.log1p(x))
_generic(tanh, lambda x: np.float32(math.tanh(np.float64(x))), lambda x: math.tanh(x))


# ------------------------------------------------------------------- compound


def xexp(a, x):
    """a·e^x without underflow of the intermediate e^x."""
    if x != x or a != a:
        return type(a)(math.nan)
    if x > 709.0:
        return type(a)(float(a) * math.inf)
    if x < -700.0:
        h = math.exp(0.5 * float(x))
        return type(a)((float(a) * h) * h)
    return type(a)(float(a) * math.exp(x))


@overload(xexp)
def _ol_xexp(a, x):
    if a == x == _F32:

        def impl32(a, x):
            return np.float32(np.float64(a) * math.exp(np.float64(x)))

        return impl32
    if a == x == _F64:

        def impl64(a, x):
            if x < -700.0:
                h = math.exp(0.5 * x)
                return (a * h) * h
            return a * math.exp(x)

        return impl64
    return None


# erfcx(x) = e^(x^2) erfc(x); below _ERFCX_ASYM it is formed from erfc and an exact square,
# above it from the asymptotic series 1/(x√π) Σ (-1)^n (2n-1)!! / (2x²)^n.
_ERFCX_ASYM = 25.0
_INV_SQRTPI = 0.56418958354775628695


def _erfcx64(x):
    if x < _ERFCX_ASYM:
        hi = x * x
        lo = fma(x, x, -hi)
        return math.erfc(x) * math.exp(hi) * (1.0 + lo)
    v = 1.0 / (2.0 * x * x)
    s = 1.0
    term = 1.0
    for n in range(1, 12):
        term = -term * (2 * n - 1) * v
        s += term
    return s * _INV_SQRTPI / x


def erfcx(x):
    """e^(x²)·erfc(x) for x >= 0."""
    if x != x:
        return x
    if x == math.inf:
        return type(x)(0.0)
    return type(x)(_erfcx64(float(x)))


@overload(erfcx)
def _ol_erfcx(x):
    if x == _F32:

        def impl32(x):
            if x != x:
                return x
            if x == np.float32(np.inf):
                return np.float32(0.0)
            return np.float32(_erfcx64_nb(np.float64(x)))

        return impl32
    if x == _F64:

        def impl64(x):
            if x != x:
                return x
            if x == np.inf:
                return 0.0
            return _erfcx64_nb(x)

        return impl64
    return None


def _erfcx64_nb(x):
    return _erfcx64(x)


@overload(_erfcx64_nb)
def _ol_erfcx64_nb(x):
    def impl(x):
        if x < _ERFCX_ASYM:
            hi = x * x
            lo = fma(x, x, -hi)
            return math.erfc(x) * math.exp(hi) * (1.0 + lo)
        v = 1.0 / (2.0 * x * x)
        s = 1.0
        term = 1.0
        for n in range(1, 12):
            term = -term * (2 * n - 1) * v
            s += term
        return s * _INV_SQRTPI / x

    return impl


# x - tanh x = x·K/(1+K) with K the tail of tanh's continued fraction
# tanh x = x/(1 + x²/(3 + x²/(5 + ...))): every term positive, no cancellation.
_XMT_CF = 2.0
_XMT_TERMS = 24


def _xmtanh64(x):
    ax = abs(x)
    if not ax < _XMT_CF:
        return x - math.tanh(x)
    x2 = x * x
    k = 0.0
    for n in range(_XMT_TERMS, 0, -1):
        k = x2 / ((2 * n + 1) + k)
    return x * k / (1.0 + k)


def xmtanh(x):
    """x − tanh x, accurate near 0."""
    return type(x)(_xmtanh64(float(x)))


def _xmtanh64_nb(x):
    return _xmtanh64(x)


@overload(_xmtanh64_nb)
def _ol_xmtanh64_nb(x):
    def impl(x):
        ax = abs(x)
        if not ax < _XMT_CF:
            return x - math.tanh(x)
        x2 = x * x
        k = 0.0
        for n in range(_XMT_TERMS, 0, -1):
            k = x2 / ((2 * n + 1) + k)
        return x * k / (1.0 + k)

    return impl


@overload(xmtanh)
def _ol_xmtanh(x):
    if x == _F32:
        return lambda x: np.float32(_xmtanh64_nb(np.float64(x)))
    if x == _F64:
        return lambda x: _xmtanh64_nb(x)
    return None
