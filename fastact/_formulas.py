"""The scalar mathematics of every activation: f(x), f'(x) and, where it exists, f'(y).

One small function per formula, generic over float32 and float64 through ``T = type(x)``
(every constant is ``T(...)``, so float32 stays float32). Parameters are trailing scalars of
the same type. No arrays, no targets, no dispatch: ``_cpu`` and ``_cuda`` build kernels from
these. Comparisons are written so that NaN falls through to a branch that returns it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from numba import njit

from . import _vmath as vm

scalar = njit(error_model="numpy", fastmath={"contract"}, forceinline=True)
"""Decorator for a scalar formula: NumPy error model (no division checks, keeps SIMD),
FMA contraction only (no nnan/ninf/reassoc, which would break NaN and compensated sums),
and LLVM's alwaysinline (``forceinline``), so that the kernel loops inline it and vectorize:
a formula that calls only other formulas got no mark from the math layer, and float32
gelu' (approximate='tanh') ran as a scalar loop, 7x slower."""

_SELU_SCALE = 1.0507009873554804934193349852946
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE_ALPHA = 1.7580993408473768599402175208123  # λ·α, correctly rounded
_INV_SQRT2PI = 0.39894228040143267794
_SQRT_2_OVER_PI = 0.79788456080286535588
_GELU_TANH_K = 0.044715


@scalar
def _nan_or(x, v):
    """v, or x itself when x is NaN."""
    return v if x == x else x


@scalar
def _finite_or_zero(v):
    """v if finite, else 0 (a rounding correction that is meaningless at ±inf or NaN)."""
    return v if abs(v) < math.inf else type(v)(0)


class Split(NamedTuple):
    """A formula written fn(x, *p) = finish(x, P, *p), P = near_part(u) where ``near(u)`` and
    far(x, *p) elsewhere, u = arg(x, *p) (x itself if arg is None). near_part is a table
    (``_piecewise.Table``: P = near_part.scalar(|u|), or of u for a signed table; ``near``
    ``vm.near`` unless given, ``vm.tabled`` for a table that covers every float32) or a
    scalar formula of u: a cheaper form that holds on part of the range (``near`` then says
    where). The CPU kernels evaluate the near part for a whole block at once where every
    element is near (a table through ``_piecewise.block_eval``), which is the same P bit for
    bit. A far marked by ``passes`` is computed a pass at a time over the block."""

    near_part: object
    far: object
    finish: object
    arg: object = None
    near: object = None


def passes(*chain, avx2_only: bool = False):
    """Decorator: marks a far function computed as the chain v_1 = chain[0](x, *p), v_i =
    chain[i-1](x, v_(i-1), *p), the last v its value (its body is that composition). The
    CPU kernels run the far part of such a ``Split`` one pass at a time over a block, each
    in a loop of its own through a buffer, so each loop holds only its own constants in
    registers and a shorter chain of dependent operations. One loop for the whole chain was
    up to twice as slow on a Zen 3 (AVX2's 16 vector registers): float32 log-sigmoid, exp
    then log1p, 1.52 against 0.77 ns per element in cache. Each pass rounds to the dtype
    either way, so the values are the same bits unless FMA contraction fuses a product that
    ends one pass into the next one's sum (the ufunc-against-kernel test would show it).
    ``avx2_only``: a chain that the kernels run in passes only without AVX-512, whose 32
    registers hold it in one loop faster (float64 gelu, gelu', tanhshrink, tanhshrink' on a
    Zen 4 and an Emerald Rapids: ``_cpu._stages``).
    (Written out, not generated: the CUDA twins need plain module-level functions.)"""

    def mark(fn):
        fn.passes = chain
        fn.passes_avx2_only = avx2_only
        return fn

    return mark


@scalar
def _exp_neg_abs(x):
    """e^-|x|."""
    return vm.exp_neg(-abs(x))


@scalar
def _log1p_of(x, t):
    """log(1 + t) for t in [0, 1]."""
    return vm.log1p_unit(t)


# ------------------------------------------------------------------ binary step
@scalar
def binary_step(x):
    T = type(x)
    return T(1) if x >= 0 else _nan_or(x, T(0))


@scalar
def binary_step_grad(x):
    return _nan_or(x, type(x)(0))


@scalar
def _one_plus(t):
    """(hi, lo) with hi + lo = 1 + t exactly, for 0 <= t <= 1 (Fast2Sum)."""
    T = type(t)
    hi = T(1) + t
    return hi, t - (hi - T(1))


@scalar
def _sq2(hi, lo):
    """(hi + lo)² rounded once (lo² is below the last place)."""
    return vm.fma(hi, hi, type(hi)(2) * hi * lo)


@scalar
def _the_part(x, P):
    """The finish of a split whose table part and far part are each the whole value."""
    return P


def keeps_x(fn):
    """Decorator: marks a formula that returns x itself for some x (relu for x > 0). In place,
    LLVM drops the stores of those unchanged elements and writes the rest with masked
    stores, which some CPUs run slower than the memory (``_cpu.MASKED_STORES_KEEP_UP``);
    there the kernel stores a marked formula's results through a buffer in whole vectors."""
    fn.keeps_x = True
    return fn


# --------------------------------------------------------------------- sigmoid
@scalar
def sigmoid(x):
    """1/(1+e^-x), from t = e^-|x| so that nothing overflows or cancels."""
    T = type(x)
    t = _exp_neg_abs(x)
    return (T(1) if x >= 0 else t) / (T(1) + t)


@scalar
def sigmoid_grad(x):
    """σ(x)σ(-x) = t/(1+t)², t = e^-|x|, with 1 + t kept exact."""
    t = _exp_neg_abs(x)
    hi, lo = _one_plus(t)
    return t / _sq2(hi, lo)


@scalar
def sigmoid_grad_y(y):
    return y * (type(y)(1) - y)


# ------------------------------------------------------------------------ tanh
@scalar
def _tanh_expm1(x):
    """e^(2a) - 1, a = |x| up to 20 (from there tanh a is 1 in both dtypes; NaN stays)."""
    T = type(x)
    a = abs(x)
    a = T(20) if a > T(20) else a
    return vm.expm1_pos(a + a)


@scalar
def _tanh_ratio(x, e):
    """e/(e + 2) = tanh a from e = e^(2a) - 1."""
    return e / (e + type(x)(2))


@passes(_tanh_expm1, _tanh_ratio)
@scalar
def _tanh_far(x):
    """tanh |x| (NaN for NaN)."""
    return _tanh_ratio(x, _tanh_expm1(x))


@scalar
def _tanh_finish(x, P):
    """P = tanh |x| with the sign of x (P is ±0 and NaN where x is)."""
    return vm.copysign(P, x)


@scalar
def tanh(x):
    """tanh x: tanh |x| from a table that covers every float32 (with AVX-512), else as
    expm1(2|x|) then e/(e+2); signed after."""
    P = vm.tanh_table(abs(x)) if vm.tabled(x) else _tanh_far(x)
    return _tanh_finish(x, P)


tanh.split = Split(vm.TANH, _tanh_far, _tanh_finish, near=vm.tabled)


@scalar
def _tanh_grad_far(x):
    """1 - tanh² = 4t/(1+t)², t = e^-2|x| (no cancellation where tanh rounds to ±1)."""
    T = type(x)
    t = vm.exp_neg(T(-2) * abs(x))
    hi, lo = _one_plus(t)
    return T(4) * t / _sq2(hi, lo)


@scalar
def tanh_grad(x):
    """1 - tanh²x = sech²x: from a table near 0 (float32 with AVX-512, Intel), else
    4t/(1+t)²."""
    return vm.sech2_near(abs(x)) if vm.near_sech2(x) else _tanh_grad_far(x)


tanh_grad.split = Split(vm.SECH2, _tanh_grad_far, _the_part, near=vm.near_sech2)


@scalar
def tanh_grad_y(y):
    T = type(y)
    return (T(1) - y) * (T(1) + y)


# ------------------------------------------------------------------------ relu
@keeps_x
@scalar
def relu(x):
    return type(x)(0) if x <= 0 else x


@scalar
def relu_grad(x):
    T = type(x)
    return T(1) if x > 0 else _nan_or(x, T(0))


@scalar
def relu6(x):
    T = type(x)
    return T(0) if x <= 0 else (T(6) if x >= 6 else x)


@scalar
def relu6_grad(x):
    T = type(x)
    return T(1) if (x > 0 and x < 6) else _nan_or(x, T(0))


@keeps_x
@scalar
def leaky_relu(x, negative_slope):
    T = type(x)
    if x > 0:
        return x
    if negative_slope == 0 and x <= 0:
        return T(0)
    return negative_slope * x


@scalar
def leaky_relu_grad(x, negative_slope):
    T = type(x)
    return T(1) if x > 0 else _nan_or(x, negative_slope)


# ------------------------------------------------------------- elu, selu, celu
@keeps_x
@scalar
def elu(x, alpha):
    return x if x > 0 else alpha * vm.expm1_neg(x)


@scalar
def elu_grad(x, alpha):
    """α·e^x for x <= 0 (e^-|x|: one scaling step, and no overflow where x > 0)."""
    T = type(x)
    return T(1) if x > 0 else alpha * _exp_neg_abs(x)


@scalar
def elu_grad_y(y, alpha):
    T = type(y)
    return T(1) if y > 0 else y + alpha


@scalar
def selu(x):
    T = type(x)
    return T(_SELU_SCALE) * x if x > 0 else T(_SELU_SCALE_ALPHA) * vm.expm1_neg(x)


@scalar
def selu_grad(x):
    T = type(x)
    return T(_SELU_SCALE) if x > 0 else T(_SELU_SCALE_ALPHA) * _exp_neg_abs(x)


@scalar
def selu_grad_y(y):
    T = type(y)
    return T(_SELU_SCALE) if y > 0 else y + T(_SELU_SCALE_ALPHA)


@keeps_x
@scalar
def celu(x, alpha):
    """elu(x/α)·α (α > 0); for α = 1 (the default) without the division, the same bits (a
    test of the parameter, which LLVM hoists out of the loop by making two of it)."""
    T = type(x)
    if alpha == T(1):
        return x if x > 0 else vm.expm1_neg(x)
    return x if x > 0 else alpha * vm.expm1_neg(x / alpha)


@scalar
def celu_grad(x, alpha):
    """e^(x/α) for x <= 0, with the rounding of x/α corrected by one FMA (e^(u+r) ≈ e^u(1+r))."""
    T = type(x)
    if alpha == T(1):  # (the same bits as below, without the two divisions)
        return T(1) if x > 0 else _exp_neg_abs(x)
    u = x / alpha
    r = _finite_or_zero(vm.fma(-u, alpha, x)) / alpha
    return T(1) if x > 0 else _exp_neg_abs(u) * (T(1) + r)


@scalar
def celu_grad_y(y, alpha):
    T = type(y)
    return T(1) if y > 0 else y / alpha + T(1)


# ------------------------------------------------------------------------ gelu
@scalar
def _gauss_tail(x):
    """(a, -hi/2, -lo/2) with a = |x| up to 40 (where a·Φ(-a) and φ(a) are 0 in both dtypes;
    NaN gives 40 too) and hi + lo = a² exactly: e^(-a²/2) = e^(-hi/2 - lo/2), with
    Φ(-a) = phicx(a)·e^(-a²/2)."""
    T = type(x)
    a = abs(x)
    a = a if a < T(40) else T(40)
    hi, lo = vm.sq_split(a)
    return a, T(-0.5) * hi, T(-0.5) * lo


@scalar
def _gelu_phicx(x):
    """a·phicx(a), a = |x| (clamped as by _gauss_tail)."""
    a, m, dm = _gauss_tail(x)
    return a * vm.phicx(a)


@scalar
def _times_gauss(x, q):
    """q·e^(-a²/2), a = |x|, from an exact a² (clamped as by _gauss_tail)."""
    a, m, dm = _gauss_tail(x)
    return vm.xexp_neg(q, m, dm)


@passes(_gelu_phicx, _times_gauss, avx2_only=True)
@scalar
def _gelu_far(x):
    """P = a·Φ(-a), a = |x|, from phicx and an exact e^(-a²/2), so the x < 0 tail keeps full
    accuracy; ±inf and NaN need no case of their own (P = 0 there)."""
    return _times_gauss(x, _gelu_phicx(x))


@scalar
def _gelu_finish(x, P):
    T = type(x)
    return (T(0) if x < 0 else x) - P  # (NaN: x - P)


@scalar
def gelu(x):
    """x·Φ(x) = x - P for x >= 0 and -P for x < 0, P = a·Φ(-a), a = |x| (a table near 0)."""
    P = vm.xphi_near(abs(x)) if vm.near(x) else _gelu_far(x)
    return _gelu_finish(x, P)


gelu.split = Split(vm.XPHI, _gelu_far, _gelu_finish)


# Φ(x) + xφ(x) = ½ + x/√(2π)·Σ c_n x^(2n), c_n = (-1)^n (2n+2) / (2^n n! (2n+1)): used for
# |x| < 0.75, where Φ and xφ cancel (the zero of gelu' is at -0.75) and the series converges.
_GELU_D_COEF = tuple(
    (-1) ** n * (2 * n + 2) / (2**n * math.factorial(n) * (2 * n + 1)) for n in range(14)
)[::-1]


@scalar
def _gelu_grad_series(x):
    T = type(x)
    x2 = x * x
    p = T(0)
    for c in _GELU_D_COEF:
        p = p * x2 + T(c)
    return T(0.5) + x * T(_INV_SQRT2PI) * p


@scalar
def _gelu_grad_phicx(x):
    """phicx(a) - a/√(2π), a = |x| (clamped as by _gauss_tail)."""
    T = type(x)
    a, m, dm = _gauss_tail(x)
    return vm.fma(-a, T(_INV_SQRT2PI), vm.phicx(a))


@scalar
def _gelu_grad_near_or(x, U):
    """U, or below |x| = 0.75 the series' value (1 - s is exact for s in [½, 1])."""
    T = type(x)
    if abs(x) < 0.75:
        s = _gelu_grad_series(x)
        return s if x < 0 else T(1) - s
    return U


@passes(_gelu_grad_phicx, _times_gauss, _gelu_grad_near_or, avx2_only=True)
@scalar
def _gelu_grad_far(x):
    """U = Φ(-a) - a·φ(a), a = |x| (Φ(x) + xφ(x) is U for x < 0 and 1 - U for x >= 0): from
    the series below 0.75, else from phicx as in gelu."""
    return _gelu_grad_near_or(x, _times_gauss(x, _gelu_grad_phicx(x)))


@scalar
def _gelu_grad_finish(x, U):
    T = type(x)
    return U if x < 0 else (T(1) - U if x >= 0 else x)


@scalar
def gelu_grad(x):
    """Φ(x) + x·φ(x) = U (x < 0) or 1 - U, U = Φ(-a) - a·φ(a) (a table near 0)."""
    U = vm.phid_near(abs(x)) if vm.near(x) else _gelu_grad_far(x)
    return _gelu_grad_finish(x, U)


gelu_grad.split = Split(vm.PHID, _gelu_grad_far, _gelu_grad_finish)


@scalar
def _gelu_tanh_2u(x):
    """2u = 2√(2/π)·x·(1 + 0.044715x²) as hi + lo (error-free products and sums), since
    σ(2u) amplifies the rounding of u by up to |2u|."""
    T = type(x)
    p = T(_GELU_TANH_K) * x * x
    s = T(1) + p
    es = (T(1) - s) + p  # exact: |p| <= 1 where it matters
    v = x * s
    ev = vm.fma(x, s, -v) + x * es
    c = T(2 * _SQRT_2_OVER_PI)
    h = c * v
    return h, vm.fma(c, v, -h) + c * ev


@scalar
def _exp_neg_abs2(h, l):
    """e^-|h+l| for a two-part argument (l tiny)."""
    T = type(h)
    t = _exp_neg_abs(h)
    return t * (T(1) - l if h >= 0 else T(1) + l)


@scalar
def gelu_tanh(x):
    """½x(1 + tanh u) = x·σ(2u), u = √(2/π)(x + 0.044715x³); for x < 0 from v = x·e^(2u)
    (no underflow of e^(2u) while the result is still normal), as in silu."""
    T = type(x)
    if abs(x) > 30:  # σ(2u) is exactly 0 or 1 in both dtypes
        return T(0) if x < 0 else x
    h, l = _gelu_tanh_2u(x)
    v = vm.xexp_neg(x * (T(1) + l) if h < 0 else T(1) - l, -abs(h), T(-0.0))
    neg = h < 0
    q = (x if neg else T(1)) / (x + v if neg else T(1) + v)  # 1/(1 + e^-2|u|)
    return (v if neg else x) * q


@scalar
def gelu_tanh_grad(x):
    """σ(2u) + 2x·σ(2u)σ(-2u)·u'."""
    T = type(x)
    if abs(x) > 30:
        return T(0) if x < 0 else T(1)
    h, l = _gelu_tanh_2u(x)
    t = _exp_neg_abs2(h, l)
    dh, dl = _one_plus(t)
    s = (T(1) if h >= 0 else t) / (dh + dl)
    ds = t / _sq2(dh, dl)
    du = T(_SQRT_2_OVER_PI) * (T(1) + T(3 * _GELU_TANH_K) * x * x)
    return s + T(2) * x * ds * du


# ------------------------------------------------------------------------ silu
@scalar
def _xexp_neg(x):
    """x·e^x for x < 0 and e^-x for x >= 0: the one exponential that silu needs (|x| >= 41
    where xexp_neg takes its exact first step; a larger x than xexp_neg's 2^32 only where
    silu returns 0)."""
    T = type(x)
    return vm.xexp_neg(x if x < 0 else T(1), -abs(x), T(-0.0))


@scalar
def _silu_finish(x, u):
    """x·σ(x) from u = _xexp_neg(x)."""
    T = type(x)
    if x < -800:  # x·σ(x) underflows in both dtypes (and u is not x·e^x there)
        return T(0)
    neg = x < 0
    q = (x if neg else T(1)) / (x + u if neg else T(1) + u)  # 1/(1+t), t = e^-|x|
    return (u if neg else x) * q  # (u·q: no underflow of x·u for a tiny x)


@scalar
def _silu_far(x):
    """x·σ(x) for every x: x·(1/(1+e^-x)) for x >= 0; for x < 0, with u = x·e^x,
    u·(x/(x+u)) (u·q does not underflow for a tiny x, where x·u/(x+u) did)."""
    return _silu_finish(x, _xexp_neg(x))  # (u first, then the cases: float64 vectorizes)


@scalar
def _silu_mid(x):
    """x/(1 + e^-x) for x >= -64, where e^-x is at most e^64: one exponential in one scaling
    step (``vm.exp_kept``), no case. From x = 64 up e^-64 stands in for e^-x (1 + either
    rounds to 1). At most 2.44 ULP on every float32 from -64 up (the far form's steps keep
    x·e^x normal further down, at about twice the time: the kernel compiled for AVX2, 0.56
    against 0.95 ns an element in cache)."""
    T = type(x)
    v = -x
    return x / (T(1) + vm.exp_kept(v if v > T(-64) else T(-64)))


@scalar
def _from_minus_64(x):
    """Whether x >= -64 (not NaN): where silu's and mish's mid forms hold, their e^x (e^-x)
    normal and at most e^64 (``vm.exp_kept`` in one scaling step)."""
    return x >= type(x)(-64)


@scalar
def silu(x):
    """x·σ(x): x/(1 + e^-x) from -64 up, else (and for NaN) ``_silu_far``."""
    return _silu_mid(x) if _from_minus_64(x) else _silu_far(x)


silu.split = Split(_silu_mid, _silu_far, _the_part, near=_from_minus_64)


@scalar
def _exp_neg_abs_kept(x):
    """e^-|x|, times 2^64 where |x| > 64 (``vm.exp_kept``)."""
    return vm.exp_kept(-abs(x))


@scalar
def _silu_grad_q(x, t):
    """Q = e^-a·w, w = ((1 - a) + e)/(1+e)², a = |x|, from t = e^-a kept (``vm.exp_kept``):
    e is t where it is not scaled, else 0 (1 + e^-a is 1 there); 1 + e exact, and 1 - a
    exact from a = 1/2 (near the zero at a = 1.28: one rounding in the numerator); 0 below
    -800. Every float32 with |x| in [2, 110]: at most 3.68 ULP (3.57 when e^-a·w came from a
    second exp, through the fma of its reduced form: 0.72x the time now, in cache on a Zen 3)."""
    T = type(x)
    v = -abs(x)
    e = t if v >= -64 else T(0)
    dh, dl = _one_plus(e)
    w = ((T(1) + v) + e) / _sq2(dh, dl)
    # (NaN: v itself, as t and w are NaNs of their own, and which one a product keeps
    # depends on how the compiler ordered its operands: the kernel's tail and its full
    # blocks gave NaNs of opposite signs)
    return T(0) if v < -800 else (vm.unkeep(t * w, v) if v == v else v)


@passes(_exp_neg_abs_kept, _silu_grad_q)
@scalar
def _silu_grad_far(x):
    """Q = silu'(-a), a = |x| (silu'(x) is Q for x < 0 and 1 - Q for x >= 0, as silu'(-a) =
    1 - silu'(a)): σ(-a)(1 - a·σ(a)) = e^-a(1 + t - a)/(1+t)², t = e^-a, from one exp that
    stays normal where e^-a alone is subnormal."""
    return _silu_grad_q(x, _exp_neg_abs_kept(x))


@scalar
def _silu_grad_finish(x, Q):
    T = type(x)
    return Q if x < 0 else T(1) - Q  # (NaN: Q is NaN)


@scalar
def silu_grad(x):
    """σ(x)(1 + x·σ(-x)) = Q (x < 0) or 1 - Q, Q = silu'(-|x|) (a table near 0)."""
    Q = vm.siluq_near(abs(x)) if vm.near(x) else _silu_grad_far(x)
    return _silu_grad_finish(x, Q)


silu_grad.split = Split(vm.SILUQ, _silu_grad_far, _silu_grad_finish)


# ------------------------------------------------------------------------ mish
@scalar
def _mish_exp(x):
    """w = e^x, or x·e^x below -64 (x(1+m) rounded once, then 2^k: exact where e^x alone
    underflows), from one reduced exp e^x = (1+m)·2^k."""
    T = type(x)
    a = x if x < -64 else T(1)
    m, k = vm.exp_reduced(x)
    return vm.ldexp_low(vm.fma(a, m, a), k)  # (|a(1+m)| >= 0.7: ldexp_low's contract)


@scalar
def _mish_finish(x, w):
    """x·n/(n+2), n = t(t+2), t = w = e^x; below -64 w itself (= x·e^x·(t+2)/(n+2), where
    t + 2 and n + 2 round to 2)."""
    T = type(x)
    if x < -800:  # x·tanh(softplus x) underflows in both dtypes
        return T(0)
    if x >= 20:
        return x
    if x < -64:
        return w
    n = vm.fma(w, w, T(2) * w)
    return x * n / (n + T(2))


@scalar
def _mish_far(x):
    """x·tanh(softplus x) for every x: x·n/(n+2), n = t(t+2), t = e^x; below -64, x·e^x
    (the rest rounds to 1)."""
    return _mish_finish(x, _mish_exp(x))


@scalar
def _mish_mid(x):
    """x·n/(n+2), n = t(t+2), t = e^x, for x >= -64 (t normal: one scaling step,
    ``vm.exp_kept``); from 20 up x itself (n/(n+2) rounds to 1, and x·n could overflow).
    At most 3.94 ULP on every float32 from -64 up (at -3.26, where the far form, with the
    same quotient, is as far); compiled for AVX2, 0.73 against 0.99 ns an element in cache."""
    T = type(x)
    t = vm.exp_kept(x)
    n = vm.fma(t, t, T(2) * t)
    return x if x >= T(20) else x * n / (n + T(2))


@scalar
def mish(x):
    """x·tanh(softplus x): ``_mish_mid`` from -64 up, else (and for NaN) ``_mish_far``."""
    return _mish_mid(x) if _from_minus_64(x) else _mish_far(x)


mish.split = Split(_mish_mid, _mish_far, _the_part, near=_from_minus_64)


@scalar
def _mish_grad_body(x, t):
    """From t = e^x: for x >= -1 mish'(x); below, q with mish'(x) = q·e^x (see
    _mish_grad_far)."""
    T = type(x)
    D = vm.fma(t, t + T(2), T(2))
    near = x >= -1
    s = T(1) + x
    d = t * (T(8) + t * (T(8) + t * (T(4) + t)))
    M = T(6) + T(4) * x + t * (T(4) + t)
    num = T(4) * x * (T(1) + t) if near else vm.fma(t, M, -s * d)
    r = T(1) / D  # the one division
    z = num * r * r
    w = (t + T(2)) * r
    w = vm.fma(vm.fma(-w, D, t + T(2)), r, w)  # (t+2)/D to within half an ULP, as divided
    return t * (w + z) if near else s + z


@scalar
def _exp_kept_low(x):
    """e^x for x <= 20 (above, mish' is 1: e^20 stands in), times 2^64 below -64
    (``vm.exp_kept``)."""
    T = type(x)
    return vm.exp_kept(T(20) if x > 20 else x)  # (NaN passes)


@scalar
def _mish_grad_scaled(x, t):
    """mish'(x) from t = e^x kept (``vm.exp_kept``; 0 for the body below -64, where e^x
    rounds away next to 1): the body's v itself for x >= -1, else v·e^x, kept normal where
    e^x alone is subnormal; 0 below -800, 1 from 20."""
    T = type(x)
    v = _mish_grad_body(x, t if x >= -64 else T(0))
    if x < -800:  # e^x·x underflows in both dtypes (and 4(1+x) could overflow)
        return T(0)
    if x >= 20:
        return T(1)
    if x >= -1:
        return v
    return vm.unkeep(v * t, x) if x == x else x  # (NaN: x, as in _silu_grad_q)


@passes(_exp_kept_low, _mish_grad_scaled)
@scalar
def _mish_grad_far(x):
    """tanh(sp) + x·σ(x)·sech²(sp) = t·N/D², t = e^x, D = t²+2t+2,
    N = (t+2)D + 4x(1+t) = 4(1+x) + tM, M = 6 + 4x + t(4 + t).
    x >= -1: t·((t+2)/D + 4x(1+t)/D²) (the second term at most a tenth of the first).
    x < -1: N/D² = (1+x) + (tM - (1+x)δ)/D², δ = D² - 4 = t(8 + t(8 + t(4 + t))): 1 + x is
    exact and the rest a correction (the zero of mish' at -1.19 aside); times e^x from the
    same exp, kept normal where e^x alone underflows (a second exp for it, through its
    reduced form, took 1.3x the time in cache on a Zen 3, at 2.26 ULP where this one is at
    2.64, on every float32 from -120 to -2). (N/D² as one quotient was 4.6 ULP
    off in float32, at -6.57 and -0.17.) One division, r = 1/D: z = num·r², and (t+2)/D
    from (t+2)·r and one FMA residual step."""
    return _mish_grad_scaled(x, _exp_kept_low(x))


@scalar
def mish_grad(x):
    """mish'(x): from a signed table near 0 (float32), elsewhere ``_mish_grad_far``."""
    return vm.mishd_near(x) if vm.near(x) else _mish_grad_far(x)


mish_grad.split = Split(vm.MISHD, _mish_grad_far, _the_part)


# -------------------------------------------------------------------- softplus
@scalar
def _exp_neg_abs_scaled(x, beta):
    """(u, e^-|βx|), u = fl(βx), with βx - u (one FMA) in the exponent; a NaN u gives a
    finite t (callers return u there). Where u is ±inf or NaN, so is βx - u, but xexp_neg
    drops it there (e^-|u| is 0)."""
    u = beta * x
    lo = vm.fma(beta, x, -u)
    return u, vm.xexp_neg(type(x)(1), -abs(u), -lo if u >= 0 else lo)


@scalar
def _softplus_arg(x, beta, threshold):
    return beta * x


@scalar
def _softplus_exp(x, beta, threshold):
    """e^-|u|, u = fl(βx)."""
    return _exp_neg_abs(beta * x)


@scalar
def _softplus_log(x, t, beta, threshold):
    """_log1p_of with softplus's parameters (a pass takes them all; no *p: the CUDA twins)."""
    return _log1p_of(x, t)


@passes(_softplus_exp, _softplus_log)
@scalar
def _softplus_far(x, beta, threshold):
    """L = log(1 + e^-|u|), u = fl(βx) (finish puts back the rounding of βx)."""
    return _softplus_log(x, _softplus_exp(x, beta, threshold), beta, threshold)


@scalar
def _softplus_finish(x, L, beta, threshold):
    """(max(βx, 0) + log(1 + e^-|βx|))/β from L = log(1 + e^-|u|), u = fl(βx): the log is
    L·(1 - δ) to first order, δ = |βx| - |u| (one FMA, |δ| <= 2^-24|u|), as L'/L is -1
    within 0.15/|u| (0.15·2^-24 relative at most); x where u > threshold. For β = 1 (the
    default) u = x exactly and the result is the same without the correction and the
    scaling: a test of the parameter, which LLVM hoists out of the loop by making two of it
    (float32 softplus 0.84x the time in cache on a Zen 3, other β unchanged)."""
    T = type(x)
    u = beta * x
    if u > threshold:
        return x
    if beta == T(1):  # (same bits as below: lo = 0 and 1/β = 1)
        return x + L if u > 0 else L
    lo = _finite_or_zero(vm.fma(beta, x, -u))  # ±inf and NaN: no correction
    p = vm.fma(L, -lo if u >= 0 else lo, L) * (T(1) / beta)  # 1/β: hoisted, no division
    # NaN: p, L's NaN (fma(-L, ·, L) and x + p met two NaNs, and which one an operation
    # keeps depends on how the compiler ordered its operands)
    return x + p if u > 0 else p


@keeps_x
@scalar
def softplus(x, beta, threshold):
    """log(1+e^(βx))/β = (max(βx,0) + log1p(e^-|βx|))/β (a table near 0); x where βx >
    threshold."""
    u = beta * x
    if vm.near(u):
        L = vm.log1pexp_near(abs(u))
    else:
        L = _softplus_far(x, beta, threshold)
    return _softplus_finish(x, L, beta, threshold)


softplus.split = Split(vm.LOG1PEXP, _softplus_far, _softplus_finish, _softplus_arg)


@scalar
def softplus_grad(x, beta, threshold):
    """σ(βx); 1 where βx > threshold. (β = 1: e^-|x| without the FMA that puts back the
    rounding of βx, which is exact then: the same bits, and LLVM makes two loops.)"""
    T = type(x)
    if beta == T(1):
        u, t = x, _exp_neg_abs(x)
    else:
        u, t = _exp_neg_abs_scaled(x, beta)
    if u > threshold:
        return T(1)
    r = T(1) / (T(1) + t)
    return r if u >= 0 else (t * r if u < 0 else u)


@scalar
def softplus_grad_y(y, beta, threshold):
    """1 - e^(-βy)."""
    T = type(y)
    v = beta * y
    return T(1) if v > threshold else -vm.expm1(-v)


# -------------------------------------------------------------------- softsign
@scalar
def softsign(x):
    T = type(x)
    a = abs(x)
    if a == math.inf:
        return T(1) if x > 0 else T(-1)
    return x / (T(1) + a)


@scalar
def softsign_grad(x):
    T = type(x)
    r = T(1) / (T(1) + abs(x))
    return r * r


@scalar
def softsign_grad_y(y):
    T = type(y)
    d = T(1) - abs(y)
    return d * d


# ---------------------------------------------------------- hardtanh and co.
@scalar
def hardtanh(x, min_val, max_val):
    """x clamped to [min_val, max_val] (validated min_val <= max_val), NaN kept: the upper
    bound first, then the lower, which compile to one vminps and one vmaxps (the other
    order took two compares, two blends and mask spills: 1.07x an in-place multiply on one
    thread at 10^8, against 1.03x)."""
    y = max_val if max_val < x else x
    return min_val if y < min_val else y


@scalar
def hardtanh_grad(x, min_val, max_val):
    T = type(x)
    return T(1) if (x > min_val and x < max_val) else _nan_or(x, T(0))


@scalar
def _div6(p):
    """p/6 correctly rounded for |p| >= 2^-120, as p·(1/6) plus one FMA correction (a
    vector division has a fraction of a multiply's throughput)."""
    T = type(p)
    q = p * T(1 / 6)
    return vm.fma(vm.fma(-q, T(6), p), T(1 / 6), q)


@scalar
def hardsigmoid(x):
    """relu6(x+3)/6."""
    T = type(x)
    return T(0) if x <= -3 else (T(1) if x >= 3 else _div6(x + T(3)))


@scalar
def hardsigmoid_grad(x):
    T = type(x)
    return T(1) / T(6) if (x > -3 and x < 3) else _nan_or(x, T(0))


@scalar
def hardsigmoid_grad_y(y):
    T = type(y)
    return T(1) / T(6) if (y > 0 and y < 1) else _nan_or(y, T(0))


@scalar
def hardswish(x):
    """x·relu6(x+3)/6."""
    T = type(x)
    return T(0) if x <= -3 else (x if x >= 3 else x * _div6(x + T(3)))


@scalar
def hardswish_grad(x):
    """(2x+3)/6 inside (-3, 3); 0 at -3 and 1 at 3, as PyTorch."""
    T = type(x)
    return T(0) if x <= -3 else (T(1) if x >= 3 else _div6(T(2) * x + T(3)))


# ----------------------------------------------------------------- log sigmoid
@passes(_exp_neg_abs, _log1p_of)
@scalar
def _log_sigmoid_far(x):
    return _log1p_of(x, _exp_neg_abs(x))


@scalar
def _log_sigmoid_finish(x, p):
    T = type(x)
    return -(p - (x if x < 0 else T(0)))  # min(x, 0) - p, -0 where it rounds to 0 (NaN: p)


@scalar
def log_sigmoid(x):
    """min(x,0) - log1p(e^-|x|) (softplus's table near 0)."""
    p = vm.log1pexp_near(abs(x)) if vm.near(x) else _log_sigmoid_far(x)
    return _log_sigmoid_finish(x, p)


log_sigmoid.split = Split(vm.LOG1PEXP, _log_sigmoid_far, _log_sigmoid_finish)


@scalar
def log_sigmoid_grad(x):
    return sigmoid(-x)


@scalar
def log_sigmoid_grad_y(y):
    return -vm.expm1(y)


# ----------------------------------------------------------------- tanhshrink
# (The passes below wrap vm's functions in formulas of their own: the pass loops call each
# member as f(x, v, *p), and Numba cannot call an inlined overload, as vm's are, with *p.)
@scalar
def _xmtanh_near0(x):
    return vm.xmtanh_near0(x)


@scalar
def _xmtanh_from(x, s):
    return vm.xmtanh_from(x, s)


@passes(_xmtanh_near0, _xmtanh_from, avx2_only=True)
@scalar
def _tanhshrink_far(x):
    """x - tanh x (vm.xmtanh), its polynomial branch and its exp branch a pass each:
    together they crowd AVX2's registers."""
    return _xmtanh_from(x, _xmtanh_near0(x))


@scalar
def _tanhshrink_finish(x, G):
    """copysign(|x|³·G, x) where x is near (G = (a - tanh a)/a³ from the table; |x|³ with
    about one rounding, from the exact error of |x|²), else G (the far form's x - tanh x)."""
    if vm.near(x):
        a = abs(x)
        z = a * a
        a3 = vm.fma(a, z, a * vm.fma(a, a, -z))
        return math.copysign(a3 * G, x)
    return G


@scalar
def tanhshrink(x):
    """x - tanh x, without cancellation: |x|³·G(|x|) near 0 (a table), elsewhere xmtanh."""
    G = vm.xmtanh3_near(abs(x)) if vm.near(x) else _tanhshrink_far(x)
    return _tanhshrink_finish(x, G)


tanhshrink.split = Split(vm.XMTANH3, _tanhshrink_far, _tanhshrink_finish)


@scalar
def _tanh_near0(x):
    return vm.tanh_near0(x)


@scalar
def _tanh_sq_from(x, s):
    return vm.tanh_sq_from(x, s)


@passes(_tanh_near0, _tanh_sq_from, avx2_only=True)
@scalar
def _tanhshrink_grad_far(x):
    """tanh²x (vm.tanh_sq: its tanh is good enough to square; (m/(m+2))², m = e^(2|x|) - 1,
    was 5.3 ULP off at 0.175), its polynomial branch and its exp branch a pass each."""
    return _tanh_sq_from(x, _tanh_near0(x))


@scalar
def _tanhshrink_grad_finish(x, S):
    """x²·S where x is near (S = tanh²(a)/a² from the table; x² as z + e exactly), else S
    (the far form's tanh²x)."""
    if vm.near(x):
        z = x * x
        return vm.fma(z, S, vm.fma(x, x, -z) * S)
    return S


@scalar
def tanhshrink_grad(x):
    """tanh²x: x²·(tanh²(a)/a²) near 0 (a table), else vm.tanh_sq."""
    S = vm.tanh2_near(abs(x)) if vm.near(x) else _tanhshrink_grad_far(x)
    return _tanhshrink_grad_finish(x, S)


tanhshrink_grad.split = Split(vm.TANH2, _tanhshrink_grad_far, _tanhshrink_grad_finish)


# -------------------------------------------------------------------- shrinks
@scalar
def softshrink(x, lambd):
    """x - lambd above lambd, x + lambd below -lambd, else 0 (lambd >= 0, validated): x minus
    x clamped to [-lambd, lambd], which is the same single rounding, +0 inside, NaN kept, and
    compiles to vminps, vmaxps, vsubps (the three branches took two compares, two blends and
    mask spills)."""
    c = lambd if lambd < x else x
    c = -lambd if c < -lambd else c
    return x - c


@keeps_x
@scalar
def hardshrink(x, lambd):
    return type(x)(0) if (x >= -lambd and x <= lambd) else x


@scalar
def shrink_grad(x, lambd):
    T = type(x)
    return T(1) if (x > lambd or x < -lambd) else _nan_or(x, T(0))


@scalar
def nonzero_grad_y(y, lambd):
    """1 where y != 0 (outside the dead band), 0 inside, NaN for NaN."""
    T = type(y)
    return T(1) if (y > 0 or y < 0) else _nan_or(y, T(0))


# ------------------------------------------------ derivatives of the output
@scalar
def relu_grad_y(y):
    return relu_grad(y)


@scalar
def relu6_grad_y(y):
    return relu6_grad(y)


@scalar
def leaky_relu_grad_y(y, negative_slope):
    return leaky_relu_grad(y, negative_slope)


@scalar
def hardtanh_grad_y(y, min_val, max_val):
    return hardtanh_grad(y, min_val, max_val)


@scalar
def binary_step_grad_y(y):
    return binary_step_grad(y)
