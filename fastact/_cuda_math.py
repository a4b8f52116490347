"""The math layer of ``_vmath`` for the CUDA target: same names, same contract, float32 kept
in float32 (libdevice ``__nv_*f`` functions, ``fma.rn.f32``; checked in the PTX).

``fastact._cuda`` compiles the scalar formulas of ``_formulas`` for the GPU with their global
``vm`` (``_vmath``) bound to this module, so each ``vm.exp(...)`` in a formula calls the
device function here. Every function is a ``cuda.jit(device=True, inline="always")``
function: Numba inlines it into the caller's IR before typing, so nothing here needs a
device to compile, and ``numba.cuda.compile_ptx`` works on a machine without a GPU (a call
to a non-inlined device function or to an ``@overload`` asks the driver for the current
device's compute capability in numba-cuda 0.30, and fails there).

Functions are generic over float32 and float64 through ``T = type(x)``. Where the two need
different constants, ``_single(T)`` (a compile-time constant after LLVM's folding) picks.
``erfcx`` calls libdevice's ``__nv_erfcxf``/``__nv_erfcx`` through an intrinsic. Under the
CUDA simulator (plain Python, where ``math.exp(1000.0)`` raises) the elementary functions
are ``_vmath``'s NumPy-based Python versions; everything else runs as written.

Importing this module imports ``numba.cuda``; only ``fastact._cuda`` imports it.
"""

from __future__ import annotations

import math

from numba import cuda
from numba.cuda import config

from . import _vmath

device = cuda.jit(device=True, inline="always")

if config.ENABLE_CUDASIM:
    _exp, _expm1, _log1p, _tanh = _vmath.exp, _vmath.expm1, _vmath.log1p, _vmath.tanh
    _erfcx = _vmath.erfcx
else:  # pragma: no cover - compiled code, checked through the PTX audit and on a GPU
    from llvmlite import ir
    from numba.cuda import cgutils, types
    from numba.cuda.extending import intrinsic

    _exp, _expm1, _log1p, _tanh = math.exp, math.expm1, math.log1p, math.tanh

    @intrinsic
    def _erfcx(typingctx, x):
        """libdevice erfcx in the argument's precision."""
        if x not in (types.float32, types.float64):
            return None
        name = "__nv_erfcxf" if x == types.float32 else "__nv_erfcx"

        def codegen(context, builder, sig, args):
            ty = context.get_value_type(sig.return_type)
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty]), name)
            return builder.call(fn, args)

        return x(x), codegen


@device
def _single(T):
    """True for float32 (1e-300 rounds to 0 there): a constant once compiled."""
    return T(1e-300) == T(0)


# --------------------------------------------------------------------------- fma


@device
def fma(a, b, c):
    """a*b + c with a single rounding."""
    return cuda.fma(a, b, c)


@device
def copysign(a, b):
    """|a| with the sign of b."""
    return math.copysign(a, b)


@device
def sq_split(x):
    """(hi, lo) with hi = fl(x*x) and hi + lo = x*x exactly."""
    hi = x * x
    return hi, cuda.fma(x, x, -hi)


# ------------------------------------------------------------------ elementary


@device
def exp(x):
    """e^x (libdevice expf/exp: subnormal results kept without fastmath)."""
    return type(x)(_exp(x))


@device
def exp_neg(x):
    """e^x for x <= 0 (or NaN)."""
    return type(x)(_exp(x))


@device
def expm1(x):
    """e^x − 1."""
    return type(x)(_expm1(x))


# the CPU's cheaper one-sided forms (x <= 0; 0 <= x <= 64) are expm1 itself here
expm1_neg = expm1_pos = expm1


@device
def log1p(x):
    """log(1 + x)."""
    return type(x)(_log1p(x))


@device
def log1p_unit(x):
    """log(1 + x) for x in [0, 1]: libdevice log1p (the CPU's cheaper form is for SIMD)."""
    return type(x)(_log1p(x))


@device
def tanh(x):
    """tanh x."""
    return type(x)(_tanh(x))


@device
def tanh_sq(x):
    """tanh² x."""
    t = type(x)(_tanh(x))
    return t * t


# ------------------------------------------------------------------- compound


@device
def xexp(a, x):
    """a·e^x rounded once: below the exponent where e^x leaves the normal range
    (-87 in float32, -708 in float64), a·e^(x/2)·e^(x/2), whose intermediates stay normal."""
    T = type(a)
    lim = T(-80) if _single(T) else T(-700)
    if x < lim:
        h = type(a)(_exp(x * T(0.5)))
        return (a * h) * h
    return a * type(a)(_exp(x))


@device
def exp_reduced(x):
    """(m, k) with e^x = (1 + m)·2^k, k integral (x clamped to [-300, 300])."""
    T = type(x)
    y = x if x > T(-300) else T(-300)
    y = y if y < T(300) else T(300)
    k = T(math.floor(y * T(1.4426950408889634) + T(0.5)))
    r = cuda.fma(-k, T(0.693145751953125), y)  # ln 2 in two parts (the first exact in k·)
    r = cuda.fma(-k, T(1.4286068203094172e-06), r)
    return type(x)(_expm1(r)), k


@device
def exp_kept(x):
    """e^x (or NaN), times 2^64 where x < -64 (there as e^(x/2)·2^64·e^(x/2), whose factors
    are normal), x clamped to -131 (float32) or -752 (float64): as on the CPU."""
    T = type(x)
    lo = T(-131) if _single(T) else T(-752)
    y = lo if x < lo else x
    if x < T(-64):
        h = T(_exp(y * T(0.5)))
        return (h * T(2.0**64)) * h
    return T(_exp(y))


@device
def unkeep(y, x):
    """y·2^-64 where x < -64 (q·exp_kept(x) back to q·e^x)."""
    T = type(y)
    return y * T(2.0**-64) if x < T(-64) else y


@device
def ldexp(y, k):
    """y·2^k for an integral k, in two steps (each power of two exact)."""
    T = type(y)
    h = T(math.floor(k * T(0.5)))
    return (y * T(2) ** h) * T(2) ** (k - h)


ldexp_low = ldexp


@device
def xexp_neg(a, x, dx):
    """a·e^(x + dx) for x <= 0 and a tiny dx: a·(1 + dx)·e^x; 0 (dx ignored, it may be
    NaN there) where x is -inf, NaN or below -10^4, as on the CPU."""
    T = type(a)
    if not x > T(-1e4):
        return a * T(0)
    return xexp(cuda.fma(a, dx, a), x)


@device
def erfcx(x):
    """e^(x²)·erfc(x) for x >= 0."""
    return _erfcx(x)


@device
def phicx(x):
    """e^(x²/2)·Φ(-x) = ½·erfcx(x/√2) for x >= 0."""
    T = type(x)
    return T(0.5) * _erfcx(x * T(0.70710678118654752440))


@device
def xmtanh(x):
    """x − tanh x; for |x| < 2 from the continued fraction of tanh,
    tanh x = x/(1 + x²/(3 + x²/(5 + ...))), as x·K/(1 + K): no cancellation.
    7 terms reach 2e-10 relative in float32 use, 11 terms the float64 rounding floor."""
    T = type(x)
    if not abs(x) < T(2):
        return x - type(x)(_tanh(x))
    x2 = x * x
    k = T(0)
    n = 7 if _single(T) else 11
    for i in range(n, 0, -1):
        k = x2 / (T(2 * i + 1) + k)
    return x * k / (T(1) + k)


# The CPU takes the polynomial branch of tanh² and of x - tanh x (near 0) and the rest in
# two passes: near0(x), then from(x, near0(x)). Here from() is the whole function and
# near0() the value it stands for (its result is not used).


@device
def tanh_near0(x):
    """tanh |x|."""
    return type(x)(_tanh(abs(x)))


@device
def tanh_sq_from(x, s):
    """tanh² x (s, tanh_near0(x), is not needed here)."""
    return tanh_sq(x)


@device
def xmtanh_near0(x):
    """|x| − tanh |x|."""
    return xmtanh(abs(x))


@device
def xmtanh_from(x, s):
    """x − tanh x (s, xmtanh_near0(x), is not needed here)."""
    return xmtanh(x)


# ---------------------------------------------------- tables near the origin
# The GPU takes no tabulated parts (its formulas branch per thread, and each thread's exp is
# one libdevice call): ``near`` is False, and the table functions, never reached, are
# the plain formulas.


@device
def near(x):
    """False: no tables on the GPU."""
    return False


near_sech2 = near


@device
def tabled(x):
    """False: no tables on the GPU."""
    return False


@device
def xphi_near(a):
    """a·Φ(-a)."""
    T = type(a)
    return a * phicx(a) * type(a)(_exp(T(-0.5) * a * a))


@device
def phid_near(a):
    """Φ(-a) - a·φ(a)."""
    T = type(a)
    return (phicx(a) - a * T(0.39894228040143267794)) * type(a)(_exp(T(-0.5) * a * a))


@device
def log1pexp_near(a):
    """log(1 + e^-a)."""
    return type(a)(_log1p(type(a)(_exp(-a))))


@device
def xmtanh3_near(a):
    """(a - tanh a)/a³."""
    return xmtanh(a) / (a * a * a)


@device
def siluq_near(a):
    """σ(-a)(1 - a·σ(a))."""
    T = type(a)
    s = T(1) / (T(1) + exp(a))
    return s * (T(1) - a * (T(1) - s))


@device
def tanh2_near(a):
    """tanh²(a)/a²."""
    return tanh_sq(a) / (a * a)


@device
def sech2_near(a):
    """sech²a = 4t/(1+t)², t = e^-2a."""
    T = type(a)
    t = exp(T(-2) * a)
    return T(4) * t / ((T(1) + t) * (T(1) + t))


@device
def tanh_table(a):
    """tanh a."""
    return tanh(a)


@device
def mishd_near(x):
    """mish'(x) = t(4(1+x) + t(6 + 4x + t(4+t)))/D², D = t(t+2) + 2, t = e^x."""
    T = type(x)
    t = exp(x)
    D = t * (t + T(2)) + T(2)
    return t * (T(4) * (T(1) + x) + t * (T(6) + T(4) * x + t * (T(4) + t))) / (D * D)
